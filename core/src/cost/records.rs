//! The small comma-separated dialect that the embedded price tables and the
//! user's override file are written in, and the errors that point at the line
//! and field at fault.
//!
//! The dialect: one record per line; `#` starts a comment line; blank lines
//! are skipped; the first other line is the header, naming the columns
//! (case-insensitive, in any order); fields are separated by commas, have
//! their surrounding whitespace trimmed and cannot be quoted (no field of
//! ours needs a comma). A UTF-8 byte-order mark and CRLF line ends are
//! accepted. Line numbers count from 1, comments and blank lines included,
//! so they match what an editor shows.
//!
//! Nothing here panics on any input: every malformed line is an error value.
use thiserror::Error;

/// A table file that cannot be used, with where it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// The file has no header line (it is empty, or only comments).
    #[error("no header line: the first line that is not a comment must name the columns")]
    NoHeader,
    /// The whole line is wrong (e.g. the wrong number of fields).
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    /// One field of the line is wrong.
    #[error("line {line}, field {field}: {message}")]
    Field {
        line: usize,
        field: String,
        message: String,
    },
}

impl TableError {
    /// The 1-based line at fault, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            TableError::NoHeader => None,
            TableError::Line { line, .. } | TableError::Field { line, .. } => Some(*line),
        }
    }

    /// The field at fault, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            TableError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A parsed file: its header and its records, each with its line number.
#[derive(Debug)]
pub(crate) struct Table<'a> {
    columns: Vec<String>,
    pub(crate) rows: Vec<Row<'a>>,
}

/// One record.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub(crate) line: usize,
    values: Vec<&'a str>,
}

/// Longest line we accept; anything longer is not a price row.
const MAX_LINE: usize = 4096;

/// Parses `text`. Every column must be one of `known`; each of `required`
/// must be present; no column may appear twice.
pub(crate) fn parse<'a>(
    text: &'a str,
    known: &[&str],
    required: &[&str],
) -> Result<Table<'a>, TableError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.len() > MAX_LINE {
            return Err(TableError::Line {
                line,
                message: format!("longer than {MAX_LINE} characters"),
            });
        }
        let values: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        match &columns {
            None => columns = Some(header(line, &values, known, required)?),
            Some(cols) => {
                if values.len() != cols.len() {
                    return Err(TableError::Line {
                        line,
                        message: format!(
                            "expected {} fields ({}), found {}",
                            cols.len(),
                            cols.join(","),
                            values.len()
                        ),
                    });
                }
                rows.push(Row { line, values });
            }
        }
    }
    let columns = columns.ok_or(TableError::NoHeader)?;
    Ok(Table { columns, rows })
}

fn header(
    line: usize,
    values: &[&str],
    known: &[&str],
    required: &[&str],
) -> Result<Vec<String>, TableError> {
    let mut columns: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let name = value.to_ascii_lowercase();
        if !known.contains(&name.as_str()) {
            return Err(TableError::Field {
                line,
                field: printable(value),
                message: format!("unknown column; known columns are {}", known.join(", ")),
            });
        }
        if columns.contains(&name) {
            return Err(TableError::Field {
                line,
                field: name,
                message: "column named twice".to_string(),
            });
        }
        columns.push(name);
    }
    for need in required {
        if !columns.iter().any(|c| c == need) {
            return Err(TableError::Line {
                line,
                message: format!("header lacks the required column {need}"),
            });
        }
    }
    Ok(columns)
}

impl Table<'_> {
    /// True when the header has the column.
    pub(crate) fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// The value of `column` in `row`: `None` when the column is absent or
    /// the field is empty.
    pub(crate) fn get<'r>(&self, row: &'r Row<'_>, column: &str) -> Option<&'r str> {
        let index = self.columns.iter().position(|c| c == column)?;
        row.values.get(index).copied().filter(|v| !v.is_empty())
    }

    /// A required, non-empty text field.
    pub(crate) fn text<'r>(&self, row: &'r Row<'_>, column: &str) -> Result<&'r str, TableError> {
        self.get(row, column)
            .ok_or_else(|| field_error(row.line, column, "required, but empty".to_string()))
    }

    /// An optional number, finite and within `min..=max`.
    pub(crate) fn number(
        &self,
        row: &Row<'_>,
        column: &str,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, TableError> {
        let Some(text) = self.get(row, column) else {
            return Ok(None);
        };
        let value: f64 = text.parse().map_err(|_| {
            field_error(
                row.line,
                column,
                format!("not a number: '{}'", printable(text)),
            )
        })?;
        if !value.is_finite() {
            return Err(field_error(
                row.line,
                column,
                format!("not a finite number: '{}'", printable(text)),
            ));
        }
        if value < min || value > max {
            return Err(field_error(
                row.line,
                column,
                format!("{value} is outside {min}..={max}"),
            ));
        }
        Ok(Some(value))
    }

    /// An optional whole number within `min..=max`.
    pub(crate) fn integer(
        &self,
        row: &Row<'_>,
        column: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, TableError> {
        let Some(value) = self.number(row, column, min as f64, max as f64)? else {
            return Ok(None);
        };
        if value.fract() != 0.0 {
            return Err(field_error(
                row.line,
                column,
                format!("not a whole number: {value}"),
            ));
        }
        Ok(Some(value as u64))
    }

    /// A required number, finite and within `min..=max`.
    pub(crate) fn required_number(
        &self,
        row: &Row<'_>,
        column: &str,
        min: f64,
        max: f64,
    ) -> Result<f64, TableError> {
        self.number(row, column, min, max)?
            .ok_or_else(|| field_error(row.line, column, "required, but empty".to_string()))
    }
}

/// An error about one field.
pub(crate) fn field_error(line: usize, field: &str, message: String) -> TableError {
    TableError::Field {
        line,
        field: field.to_string(),
        message,
    }
}

/// `text` shortened and with control characters escaped, for messages.
pub(crate) fn printable(text: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// The value of a `# key: value` comment line, e.g. `# version: 2026-07-20.1`.
pub(crate) fn comment_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix('#')?.trim_start();
        let rest = rest.strip_prefix(key)?.trim_start().strip_prefix(':')?;
        Some(rest.trim())
    })
}

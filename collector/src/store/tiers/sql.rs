//! The tiers' SQL, for each engine: their tables, the minute tier's merge,
//! and the roll-up of one bucket from the tier below.
use super::{COLUMNS, Merge, SAWTOOTH_MINUTES, Tier, all_columns};

/// The SQL dialect differences between the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }

    fn placeholder(self, i: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{i}"),
            Dialect::Postgres => format!("${i}"),
        }
    }
}

/// The tables of the three tiers and the dirty-bucket list.
pub fn schema(dialect: Dialect) -> String {
    let int = match dialect {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    };
    let without_rowid = match dialect {
        Dialect::Sqlite => " WITHOUT ROWID",
        Dialect::Postgres => "",
    };
    let mut sql = String::new();
    for tier in Tier::ALL {
        let cols: String = COLUMNS
            .iter()
            .map(|(c, _)| format!("    {c} {int} NOT NULL,\n"))
            .collect();
        // Keyed by time first: new buckets go to the end of the tree, the
        // report and the roll-up read time ranges, retention cuts the front.
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
    bucket_minute {int} NOT NULL,
    workload_id {int} NOT NULL,
    node_id {int} NOT NULL,
{cols}    {SAWTOOTH_MINUTES} {int} NOT NULL,
    PRIMARY KEY (bucket_minute, workload_id, node_id)
){without_rowid};
",
            table = tier.table()
        ));
    }
    sql.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS rollup_dirty (
    tier {int} NOT NULL,
    bucket_minute {int} NOT NULL,
    PRIMARY KEY (tier, bucket_minute)
){without_rowid};
"
    ));
    sql
}

/// Merges one bucket into the minute tier: parameters are bucket_minute,
/// workload_id, node_id, then [`Rollup::values`].
pub fn upsert_minute(dialect: Dialect) -> String {
    let names: Vec<&str> = all_columns().collect();
    let params: Vec<String> = (1..=names.len() + 3)
        .map(|i| dialect.placeholder(i))
        .collect();
    format!(
        "INSERT INTO {} (bucket_minute, workload_id, node_id, {}) VALUES ({})
         ON CONFLICT (bucket_minute, workload_id, node_id) DO UPDATE SET {}",
        Tier::Minute.table(),
        names.join(", "),
        params.join(", "),
        merge_minute_set(dialect)
    )
}

/// The SET clause merging a new minute row into a stored one.
fn merge_minute_set(dialect: Dialect) -> String {
    let table = Tier::Minute.table();
    let set: Vec<String> = COLUMNS
        .iter()
        .map(|(c, m)| match m {
            Merge::Sum => format!("{c} = {table}.{c} + excluded.{c}"),
            Merge::Max => format!("{c} = {}({table}.{c}, excluded.{c})", dialect.greatest()),
            Merge::Min => format!(
                "{c} = CASE WHEN {table}.{c} = 0 THEN excluded.{c} WHEN excluded.{c} = 0 THEN {table}.{c} ELSE {}({table}.{c}, excluded.{c}) END",
                dialect.least()
            ),
        })
        .collect();
    set.join(", ")
}

/// PostgreSQL: merges many buckets into the minute tier in one statement;
/// parameters are one `int8[]` per column (bucket_minute, workload_id,
/// node_id, then [`Rollup::values`]), the rows in key order and each key
/// once (a row cannot be updated twice by one statement).
pub fn upsert_minute_unnest() -> String {
    let names: Vec<&str> = all_columns().collect();
    let arrays: Vec<String> = (1..=names.len() + 3)
        .map(|i| format!("${i}::int8[]"))
        .collect();
    format!(
        "INSERT INTO {table} (bucket_minute, workload_id, node_id, {})
         SELECT * FROM UNNEST({})
         ON CONFLICT (bucket_minute, workload_id, node_id) DO UPDATE SET {}",
        names.join(", "),
        arrays.join(", "),
        merge_minute_set(Dialect::Postgres),
        table = Tier::Minute.table(),
    )
}

/// Recomputes one bucket of `tier` from the tier below: parameters are the
/// bucket's first minute and the first minute after it.
pub fn roll(dialect: Dialect, tier: Tier) -> Option<String> {
    let below = tier.below()?;
    let (from, to) = (dialect.placeholder(1), dialect.placeholder(2));
    // PostgreSQL types a parameter by its first use: here a select list.
    let from_value = match dialect {
        Dialect::Sqlite => from.clone(),
        Dialect::Postgres => format!("{from}::int8"),
    };
    let exprs: Vec<String> = COLUMNS
        .iter()
        .map(|(c, m)| match (*c, m) {
            // A minute's swing is its own peak − min.
            ("sawtooth", _) if below == Tier::Minute => {
                "SUM(CASE WHEN windows > 1 THEN rss_peak - rss_min ELSE 0 END)".to_string()
            }
            (c, Merge::Sum) => format!("SUM({c})"),
            (c, Merge::Max) => format!("MAX({c})"),
            // 0 is "no sample": the lowest of the others, else 0.
            (c, Merge::Min) => format!("COALESCE(MIN(NULLIF({c}, 0)), 0)"),
        })
        .chain(std::iter::once(if below == Tier::Minute {
            "SUM(CASE WHEN windows > 1 THEN 1 ELSE 0 END)".to_string()
        } else {
            format!("SUM({SAWTOOTH_MINUTES})")
        }))
        .collect();
    let names: Vec<&str> = all_columns().collect();
    let set: Vec<String> = names
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    // The WHERE also keeps SQLite's parser from reading ON CONFLICT as a
    // join constraint (INSERT … SELECT needs one).
    Some(format!(
        "INSERT INTO {table} (bucket_minute, workload_id, node_id, {names})
         SELECT {from_value}, workload_id, node_id, {exprs}
         FROM {below_table}
         WHERE bucket_minute >= {from} AND bucket_minute < {to}
         GROUP BY workload_id, node_id
         ON CONFLICT (bucket_minute, workload_id, node_id) DO UPDATE SET {set}",
        table = tier.table(),
        names = names.join(", "),
        exprs = exprs.join(", "),
        below_table = below.table(),
        set = set.join(", "),
    ))
}

/// Marks a bucket of a tier to be recomputed.
pub fn mark_dirty(dialect: Dialect) -> String {
    format!(
        "INSERT INTO rollup_dirty (tier, bucket_minute) VALUES ({}, {}) ON CONFLICT DO NOTHING",
        dialect.placeholder(1),
        dialect.placeholder(2)
    )
}

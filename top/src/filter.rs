//! The filter of the table (`/`): words that must all match a row's name,
//! pid, container, pod, runtime, verdict or node, narrowed by a field
//! (`verdict:gc-heavy`) or negated (`!idle`).
use super::rows::Entry;
use tally_core::gc::VerdictKind;

/// One term of the filter: `java`, `verdict:gc-heavy`, `!idle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: Option<Field>,
    pub needle: String,
    pub negate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Pid,
    Container,
    Pod,
    Runtime,
    Verdict,
    Node,
}

/// The filter's field names, for the help screen.
pub const FILTER_FIELDS: &str = "name: pid: container: pod: runtime: verdict: node:";

/// Splits a filter into terms: whitespace separates them, all must match.
pub fn parse_filter(text: &str) -> Vec<Term> {
    text.split_whitespace()
        .filter_map(|raw| {
            let (negate, raw) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let lower = raw.to_lowercase();
            let (field, needle) = match lower.split_once(':') {
                Some((f, v)) => match field_named(f) {
                    Some(field) => (Some(field), v.to_owned()),
                    None => (None, lower.clone()),
                },
                None => (None, lower.clone()),
            };
            (!needle.is_empty()).then_some(Term {
                field,
                needle,
                negate,
            })
        })
        .collect()
}

fn field_named(f: &str) -> Option<Field> {
    Some(match f {
        "name" | "comm" => Field::Name,
        "pid" => Field::Pid,
        "container" | "ctr" | "cgroup" => Field::Container,
        "pod" => Field::Pod,
        "runtime" | "rt" => Field::Runtime,
        "verdict" | "v" => Field::Verdict,
        "node" => Field::Node,
        _ => return None,
    })
}

impl Term {
    pub fn matches(&self, e: &Entry) -> bool {
        let n = self.needle.as_str();
        let verdict = e.verdict.map_or("", VerdictKind::name);
        let hit = match self.field {
            Some(Field::Name) => e.name_lc.contains(n),
            Some(Field::Pid) => e.search.pid.starts_with(n),
            Some(Field::Container) => e.search.container.contains(n),
            Some(Field::Pod) => e.search.pod.contains(n),
            Some(Field::Runtime) => e.runtime.name().starts_with(n),
            Some(Field::Verdict) => verdict.contains(n),
            Some(Field::Node) => e.search.node.contains(n),
            None => {
                e.name_lc.contains(n)
                    || e.search.pid.starts_with(n)
                    || e.search.container.contains(n)
                    || e.search.pod.contains(n)
                    || e.runtime.name() == n
                    || verdict.contains(n)
                    || e.search.node.contains(n)
            }
        };
        hit != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_fields_negation_and_bare_words() {
        let t = parse_filter("java  verdict:GC-heavy !idle foo:bar pod:");
        assert_eq!(t.len(), 4, "{t:?}");
        assert_eq!(t[0].field, None);
        assert_eq!(t[1].field, Some(Field::Verdict));
        assert_eq!(t[1].needle, "gc-heavy");
        assert!(t[2].negate);
        assert_eq!(t[3].field, None, "unknown field: the whole term is a word");
        assert_eq!(t[3].needle, "foo:bar");
    }
}

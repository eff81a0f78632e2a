//! GC code by function name, for sampled stacks.
//!
//! A sample counts as GC when **any** frame of its stack is GC code (see
//! `collect::stacks`), so the rules name both the collectors' entry points
//! (everything below them is GC) and the hot leaf functions (when the
//! unwinder loses the callers, the leaf alone must still say GC). Code that
//! only *may* lead to a collection, above all allocation, is not GC: when it
//! does collect, the collector's own frames are on the stack and match.
//!
//! Symbols arrive demangled (`v8::internal::Heap::CollectGarbage(…)`,
//! `void OopOopIterateDispatch<G1CMOopClosure>::Table::oop_oop_iterate<…>(…)`)
//! or, from an unwinder that does not demangle, as Itanium-mangled names
//! (`_ZN2v88internal4Heap14CollectGarbageE…`); Go symbols are Go's own
//! (`runtime.(*gcWork).tryGet`, `runtime.gcMarkDone.func1`,
//! `runtime.wbBufFlush.abi0`). JIT-compiled frames have no symbol and never
//! match.
//!
//!
//! Each runtime's rules are in its module; this one holds the dispatch and
//! what they share: C++ names as components.
use tally_core::gc::Runtime;

/// True if a frame with this symbol is garbage-collector code of `runtime`
/// (the rules are its module's: [`super::go`], [`super::jvm`],
/// [`super::node`], [`super::dotnet`]).
pub fn is_gc_symbol(runtime: Runtime, symbol: &str) -> bool {
    super::of(runtime).is_some_and(|r| r.is_gc_symbol(symbol))
}

/// True if a frame with this symbol is the runtime's own code (GC or not):
/// a process whose stacks show such frames would show its GC frames too
/// when it collects, so its GC is observable by stack. A stripped binary
/// shows none (every frame unknown), nor does one whose unwinding fails.
pub fn is_runtime_symbol(runtime: Runtime, symbol: &str) -> bool {
    super::of(runtime).is_some_and(|r| r.is_runtime_symbol(symbol))
}

// ---------------------------------------------------------------- C++ names

/// One component of a C++ qualified name: `Class<Arg, …>` is `name`
/// `Class`, `arg` `Some("Arg")` (the first identifier of the template
/// arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Comp<'a> {
    pub(super) name: &'a str,
    pub(super) arg: Option<&'a str>,
}

impl<'a> Comp<'a> {
    fn plain(name: &'a str) -> Self {
        Comp { name, arg: None }
    }

    /// From demangled text such as `OopOopIterateDispatch<ZMarkBarrierOopClosure<false> >`.
    fn from_text(text: &'a str) -> Self {
        let Some((name, args)) = text.split_once('<') else {
            return Comp::plain(text);
        };
        let args = args.trim_start();
        let end = args
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(args.len());
        Comp {
            name,
            arg: Some(&args[..end]).filter(|s| !s.is_empty()),
        }
    }
}

/// The components of a C++ function's qualified name, from a demangled or
/// an Itanium-mangled symbol: `void ns::Class<T>::method<U>(args) const`
/// gives `ns`, `Class` (arg `T`), `method` (arg `U`); the anonymous
/// namespace is dropped. Best effort: what cannot be parsed gives few or odd
/// components, which match nothing.
pub(super) fn cxx_components(symbol: &str) -> Vec<Comp<'_>> {
    if symbol.starts_with("_Z") {
        return mangled_components(symbol);
    }
    // The qualified name ends at the first '(' outside template arguments
    // (and outside "(anonymous namespace)"); a space outside them ends a
    // return type or a "non-virtual thunk to" (but not "operator bool").
    let bytes = symbol.as_bytes();
    let mut angle = 0i32;
    let mut end = bytes.len();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => angle += 1,
            b'>' => angle -= 1,
            b'(' if angle == 0 => {
                if symbol[i..].starts_with("(anonymous namespace)") {
                    i += "(anonymous namespace)".len();
                    continue;
                }
                end = i;
                break;
            }
            b' ' if angle == 0 && !symbol[..i].ends_with("operator") => start = i + 1,
            _ => {}
        }
        i += 1;
    }
    let name = &symbol[start.min(end)..end];
    let mut out = Vec::new();
    let (mut depth, mut from) = (0i32, 0);
    let nb = name.as_bytes();
    let mut j = 0;
    while j < nb.len() {
        match nb[j] {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && nb.get(j + 1) == Some(&b':') => {
                out.push(&name[from..j]);
                from = j + 2;
                j += 1;
            }
            _ => {}
        }
        j += 1;
    }
    out.push(&name[from..]);
    out.into_iter()
        .filter(|c| !c.is_empty() && *c != "(anonymous namespace)")
        .map(Comp::from_text)
        .collect()
}

/// The components of an Itanium-mangled name: `_ZN` nested names, a plain
/// `_Z<len><name>`, local names (`_ZZ…`, lambdas: their enclosing
/// function) and thunks (`_ZThn…_`, `_ZTv…_…_`). Template arguments are
/// skipped by a rough reading of the grammar (substitutions, template
/// parameters, literals of builtin types), keeping the first name in them
/// as the component's `arg`; where the reading fails, the function's own
/// name is unknown and given as `"?"`. Unwinders normally demangle (blazesym
/// does): this is the fallback.
fn mangled_components(symbol: &str) -> Vec<Comp<'_>> {
    let b = symbol.as_bytes();
    let mut out: Vec<Comp<'_>> = Vec::new();
    let mut i = 2;
    // Thunks: Th <offset> _ | Tv <offset> _ <offset> _ | Tc …; then the
    // target's encoding.
    if b.get(2) == Some(&b'T') && matches!(b.get(3), Some(b'h' | b'v')) {
        let underscores = if b[3] == b'h' { 1 } else { 2 };
        let mut seen = 0;
        i = 4;
        while seen < underscores && i < b.len() {
            if b[i] == b'_' {
                seen += 1;
            }
            i += 1;
        }
    } else if b.get(2) == Some(&b'Z') {
        i = 3;
    }
    let nested = b.get(i) == Some(&b'N');
    if nested {
        i += 1;
        // CV- and ref-qualifiers of a member function.
        while matches!(b.get(i), Some(b'r' | b'V' | b'K' | b'R' | b'O')) {
            i += 1;
        }
    }
    let skip_seq_id = |mut i: usize| {
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            i += 1;
        }
        if b.get(i) == Some(&b'_') { i + 1 } else { i }
    };
    let mut depth = 0usize;
    let mut complete = false;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_digit() => {
                let mut len = 0usize;
                while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                    len = len.saturating_mul(10).saturating_add((d - b'0') as usize);
                    i += 1;
                }
                let Some(name) = symbol.get(i..i.saturating_add(len)) else {
                    break;
                };
                if depth == 0 {
                    // "_GLOBAL__N_1" is the anonymous namespace.
                    if name != "_GLOBAL__N_1" {
                        out.push(Comp::plain(name));
                    }
                    if !nested {
                        complete = true;
                        break;
                    }
                } else if let Some(last) = out.last_mut()
                    && last.arg.is_none()
                {
                    last.arg = Some(name);
                }
                i += len;
            }
            b'I' | b'X' => {
                depth += 1;
                i += 1;
            }
            // A nested name inside template arguments, closed by an E.
            b'N' if depth > 0 => {
                depth += 1;
                i += 1;
            }
            // A literal: L <builtin type> <value> E.
            b'L' if depth > 0 && b.get(i + 1).is_some_and(|c| c.is_ascii_lowercase()) => {
                i += 2;
                while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'n') {
                    i += 1;
                }
                if b.get(i) != Some(&b'E') {
                    break;
                }
                i += 1;
            }
            // std::, or a substitution / template parameter reference.
            b'S' if b.get(i + 1) == Some(&b't') => i += 2,
            b'S' | b'T' if depth > 0 => {
                i += 1;
                if b[i - 1] == b'S' && b.get(i).is_some_and(|c| c.is_ascii_lowercase()) {
                    i += 1;
                } else {
                    i = skip_seq_id(i);
                }
            }
            b'E' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            b'E' => {
                complete = true;
                break;
            }
            // Builtin types and qualifiers in template arguments.
            c if depth > 0
                && (c.is_ascii_lowercase() || matches!(c, b'P' | b'R' | b'K' | b'V')) =>
            {
                i += 1
            }
            // Anything else (constructors C1/D2, operators, substitutions at
            // the top, unhandled grammar) ends what can be read.
            _ => break,
        }
    }
    if nested && !complete && !out.is_empty() {
        out.push(Comp::plain("?"));
    }
    out
}

pub(super) fn contains_any(s: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| s.contains(n))
}

#[cfg(test)]
mod tests;

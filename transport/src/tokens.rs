//! Bearer tokens: the collector's table of who may write as which node,
//! and the check of one request's `authorization` header against it.
//!
//! The file (`agent collector --token-file`) has one token a line:
//!
//! ```text
//! # node name                 token (16 or more characters)
//! ip-10-0-1-23.ec2.internal   6f1c0d3e9b2a4f5c8d7e6a5b4c3d2e1f
//! *                           a-token-any-node-may-use-000000
//! ```
//!
//! A token bound to a node name may write that node's reports only; `*`
//! may write any node's (simpler to roll out as one Kubernetes Secret, but
//! then a stolen token can write for every node: prefer per-node tokens or
//! mutual TLS). Every valid token may read (ListWorkloads, Watch, …).
use std::path::{Path, PathBuf};

use tonic::{Request, Status};

use super::Caller;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFileError {
    #[error("cannot read the token file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}:{line}: expected `NODE TOKEN` (NODE a node name or `*`)", path.display())]
    Syntax { path: PathBuf, line: usize },
    #[error("{}:{line}: the token is {len} characters; 16 or more are required", path.display())]
    TooShort {
        path: PathBuf,
        line: usize,
        len: usize,
    },
    #[error("{}:{line}: the token holds characters other than visible ASCII", path.display())]
    NotAscii { path: PathBuf, line: usize },
    #[error("{}:{line}: this token is already on line {first}", path.display())]
    Duplicate {
        path: PathBuf,
        line: usize,
        first: usize,
    },
    #[error("the token file {} holds no token", path.display())]
    NoToken { path: PathBuf },
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Node(String),
    AnyNode,
}

/// The collector's tokens.
#[derive(Debug, Clone)]
pub struct TokenTable {
    entries: Vec<(Vec<u8>, Scope)>,
}

const MIN_TOKEN: usize = 16;

impl TokenTable {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, TokenFileError> {
        let mut entries: Vec<(Vec<u8>, Scope)> = Vec::new();
        let mut lines_of: Vec<usize> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut fields = content.split_whitespace();
            let (Some(node), Some(token), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(TokenFileError::Syntax {
                    path: path.to_owned(),
                    line,
                });
            };
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenFileError::NotAscii {
                    path: path.to_owned(),
                    line,
                });
            }
            if token.len() < MIN_TOKEN {
                return Err(TokenFileError::TooShort {
                    path: path.to_owned(),
                    line,
                    len: token.len(),
                });
            }
            if let Some(k) = entries.iter().position(|(t, _)| t == token.as_bytes()) {
                return Err(TokenFileError::Duplicate {
                    path: path.to_owned(),
                    line,
                    first: lines_of[k],
                });
            }
            let scope = if node == "*" {
                Scope::AnyNode
            } else {
                Scope::Node(node.to_owned())
            };
            entries.push((token.as_bytes().to_vec(), scope));
            lines_of.push(line);
        }
        if entries.is_empty() {
            return Err(TokenFileError::NoToken {
                path: path.to_owned(),
            });
        }
        Ok(Self { entries })
    }

    /// The caller a request's `authorization: Bearer …` speaks for.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let token = bearer(request)?;
        // Every entry is compared in full, whatever matched: the time taken
        // says nothing about which token, or how much of one, was right.
        let mut found: Option<&Scope> = None;
        for (t, scope) in &self.entries {
            if constant_time_eq(t, token) {
                found = Some(scope);
            }
        }
        match found {
            Some(Scope::Node(name)) => Ok(Caller::Node(name.clone())),
            Some(Scope::AnyNode) => Ok(Caller::AnyNode),
            None => Err(Status::unauthenticated("unknown bearer token")),
        }
    }
}

/// The token of a request's `authorization: Bearer …` header.
pub(crate) fn bearer<T>(request: &Request<T>) -> Result<&[u8], Status> {
    let header = request.metadata().get("authorization").ok_or_else(|| {
        Status::unauthenticated("a bearer token is required (authorization: Bearer TOKEN)")
    })?;
    let token = header
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .ok_or_else(|| Status::unauthenticated("the authorization header is not `Bearer TOKEN`"))?;
    if token.is_empty() {
        return Err(Status::unauthenticated("the bearer token is empty"));
    }
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<TokenTable, TokenFileError> {
        TokenTable::parse(text, Path::new("tokens"))
    }

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_bind_callers_to_nodes() {
        let t = table(
            "# comment\n\nnode-a  aaaaaaaaaaaaaaaaaaaa\n*   bbbbbbbbbbbbbbbbbbbb  # any node\n",
        )
        .unwrap();
        assert_eq!(
            t.caller(&request(Some("Bearer aaaaaaaaaaaaaaaaaaaa")))
                .unwrap(),
            Caller::Node("node-a".into())
        );
        assert_eq!(
            t.caller(&request(Some("Bearer bbbbbbbbbbbbbbbbbbbb")))
                .unwrap(),
            Caller::AnyNode
        );
        for bad in [
            None,
            Some("Bearer aaaaaaaaaaaaaaaaaaa"),
            Some("Bearer aaaaaaaaaaaaaaaaaaaaa"),
            Some("Basic aaaaaaaaaaaaaaaaaaaa"),
            Some("Bearer "),
        ] {
            let err = t.caller(&request(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_file_names_its_line() {
        assert_eq!(
            table("node-a\n").unwrap_err(),
            TokenFileError::Syntax {
                path: "tokens".into(),
                line: 1
            }
        );
        assert_eq!(
            table("\nnode-a short\n").unwrap_err(),
            TokenFileError::TooShort {
                path: "tokens".into(),
                line: 2,
                len: 5
            }
        );
        assert!(matches!(
            table("a aaaaaaaaaaaaaaaaaaaa\nb aaaaaaaaaaaaaaaaaaaa\n").unwrap_err(),
            TokenFileError::Duplicate {
                line: 2,
                first: 1,
                ..
            }
        ));
        assert!(matches!(
            table("a aaaaaaaaaaaaaaaaaaaa extra\n").unwrap_err(),
            TokenFileError::Syntax { line: 1, .. }
        ));
        assert!(matches!(
            table("# nothing\n").unwrap_err(),
            TokenFileError::NoToken { .. }
        ));
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}

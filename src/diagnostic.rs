//! Problems in files users write, reported as `path:line:col: message`
//! (what editors and CI logs link to), with the YAML snippet below and a
//! "did you mean" for misspelt keys.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    pub message: String,
    /// The offending lines with a caret, when known.
    pub snippet: Option<String>,
    pub severity: Severity,
}

/// Errors refuse the file; warnings are printed and the file is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Diagnostic {
    /// A problem with no position in the file (e.g. two trunks share a name).
    pub fn whole_file(path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: path.to_owned(),
            position: None,
            message: message.into(),
            snippet: None,
            severity: Severity::Error,
        }
    }

    /// A problem at a 1-based line and column of `source`, with the line
    /// shown and a caret under the column.
    pub fn at(
        path: &Path,
        source: &str,
        line: u64,
        column: u64,
        message: impl Into<String>,
    ) -> Diagnostic {
        let snippet = usize::try_from(line)
            .ok()
            .and_then(|l| source.lines().nth(l.checked_sub(1)?))
            .map(|text| {
                let num = line.to_string();
                let pad = " ".repeat(num.len());
                let caret = " ".repeat(usize::try_from(column.saturating_sub(1)).unwrap_or(0));
                format!("{pad} |\n{num} | {text}\n{pad} | {caret}^")
            });
        Diagnostic {
            path: path.to_owned(),
            position: Some((line, column)),
            message: message.into(),
            snippet,
            severity: Severity::Error,
        }
    }

    /// The same problem, reported as a warning.
    pub fn warning(mut self) -> Diagnostic {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// From a YAML or type error while reading `path`.
    pub fn from_yaml(path: &Path, err: &serde_saphyr::Error) -> Diagnostic {
        let mut message = err.without_snippet().to_string();
        // The position goes in front, as path:line:col.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        if let Some(hint) = did_you_mean(&message) {
            message.push_str(&format!(" (did you mean `{hint}`?)"));
        }
        let name = path.display().to_string();
        let rendered = err.render_with_options(serde_saphyr::render_options! {
            source_name: Some(name.as_str()),
        });
        let snippet: Vec<&str> = rendered.lines().skip(1).collect();
        Diagnostic {
            path: path.to_owned(),
            position: err.location().map(|l| (l.line(), l.column())),
            message,
            snippet: (!snippet.is_empty()).then(|| snippet.join("\n")),
            severity: Severity::Error,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        match self.position {
            Some((line, col)) => write!(
                f,
                "{}:{line}:{col}: {kind}{}",
                self.path.display(),
                self.message
            )?,
            None => write!(f, "{}: {kind}{}", self.path.display(), self.message)?,
        }
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

/// For serde's "unknown field `x`, expected one of a, b": the closest key.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected one of ")?.1;
    expected
        .split(',')
        .map(|k| k.trim().trim_matches('`'))
        .filter(|k| !k.is_empty())
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k.to_owned())
}

/// The candidate closest to a misspelt `word`, if any is close enough.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, for short keys.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(
            did_you_mean("unknown field `listne`, expected one of listen, advertise, udp"),
            Some("listen".into())
        );
        assert_eq!(
            did_you_mean("unknown field `zzzzzz`, expected one of listen, advertise"),
            None
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

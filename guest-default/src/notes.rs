//! The Proxmox note (`description` config key) to NetBox `description` and `comments`.
//!
//! A ```` ```netbox-metadata ```` fenced block is removed first (it is for machines, not people).
//! `description` = the first non-empty line, trimmed, at most 200 characters. `comments` = the
//! whole note (trimmed) when it has more than one non-empty line or the first line was cut;
//! otherwise `Clear`, so a shortened note does not leave stale comments behind.

use crate::model::Field;

/// NetBox's `description` limit, in characters.
pub(crate) const DESCRIPTION_MAX_CHARS: usize = 200;

const FENCE_OPEN: &str = "```netbox-metadata";
const FENCE_CLOSE: &str = "```";

/// (description, comments) of a note.
pub(crate) fn notes(note: &str) -> (Field<String>, Field<String>) {
    let stripped;
    let text = if note.contains(FENCE_OPEN) {
        stripped = strip_metadata(note);
        stripped.as_str()
    } else {
        note
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return (Field::Clear, Field::Clear);
    };
    let more_lines = lines.next().is_some();
    let (description, cut) = match first.char_indices().nth(DESCRIPTION_MAX_CHARS) {
        Some((at, _)) => (first[..at].trim_end().to_owned(), true),
        None => (first.to_owned(), false),
    };
    let comments = if more_lines || cut {
        Field::Set(text.trim().to_owned())
    } else {
        Field::Clear
    };
    (Field::Set(description), comments)
}

/// Removes every fenced `netbox-metadata` block (an unclosed one runs to the end).
fn strip_metadata(note: &str) -> String {
    let mut out = String::with_capacity(note.len());
    let mut inside = false;
    for line in note.lines() {
        let t = line.trim();
        if inside {
            if t == FENCE_CLOSE {
                inside = false;
            }
            continue;
        }
        if t == FENCE_OPEN {
            inside = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(
            notes("web frontend\n"),
            (Field::Set("web frontend".into()), Field::Clear)
        );
        assert_eq!(notes("  \n\n"), (Field::Clear, Field::Clear));
    }

    #[test]
    fn multi_line_goes_to_comments() {
        assert_eq!(
            notes("\nweb frontend\nowner: ops\n"),
            (
                Field::Set("web frontend".into()),
                Field::Set("web frontend\nowner: ops".into())
            )
        );
    }

    #[test]
    fn long_first_line_is_cut_at_200_chars() {
        let long = "é".repeat(250);
        let (d, c) = notes(&long);
        assert_eq!(d.as_set().unwrap().chars().count(), 200);
        assert_eq!(c, Field::Set(long));
    }

    #[test]
    fn metadata_fence_is_removed() {
        let note = "```netbox-metadata\n{\"tenant\":\"x\"}\n```\nbackup server\n";
        assert_eq!(
            notes(note),
            (Field::Set("backup server".into()), Field::Clear)
        );
        let unclosed = "db\n```netbox-metadata\n{}\n";
        assert_eq!(notes(unclosed), (Field::Set("db".into()), Field::Clear));
    }
}

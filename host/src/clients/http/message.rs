//! Bounding server-supplied text before it becomes an error message.

/// Longest error message kept, in characters. Servers echo values back (a NetBox validation
/// error can quote a multi-megabyte field; a broken proxy can answer with a huge body), and a
/// message ends up in logs, reports and plans.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// `text` cut to [`MAX_MESSAGE_CHARS`], saying how much was left out.
pub fn clip_message(text: String) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!(
            "{}… ({} more bytes not shown)",
            &text[..cut],
            text.len() - cut
        ),
        None => text,
    }
}

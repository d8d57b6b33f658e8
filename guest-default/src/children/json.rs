//! A borrowing JSON reader for the children's two big texts (NetBox's current children, the
//! agent's or LXC's interfaces): members are matched and read straight from the bytes, members
//! the rules do not read are skipped without decoding, strings are slices of the text.
//!
//! Why: serde's derived visitors cost ~40k instructions per VM for the ~1.5 KB children text
//! natively (more through WASM), mostly per-member dispatch, `Option` and `Vec` plumbing and
//! skipping unread members value by value; the children were most of the rules' cost per VM.
//!
//! It reads only the plain shape: any escape in a string, a number that is not a plain
//! non-negative integer where one is read, a repeated member the caller reads, or anything
//! that is not JSON makes it give up (`None`), and the caller parses the text with serde as
//! before, which accepts the rest and words the errors. So what this accepts it reads exactly
//! as serde would, and what it declines costs one extra (partial) pass.

/// A reader over one JSON text. Every method returns `None` when the text is not the plain
/// shape it expects (the caller then falls back to serde).
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// Arrays and objects open around the position.
    depth: u32,
}

/// Deeper nesting is declined (serde then applies its own limit): the agent's answer comes
/// from guest software, and recursion without a bound would let it exhaust the stack.
const MAX_DEPTH: u32 = 64;

impl<'a> Reader<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace (not consumed).
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        // The texts are rendered compactly: the next byte is usually above the space, which
        // one comparison tells.
        let c = *self.bytes().get(self.pos)?;
        if c > b' ' {
            return Some(c);
        }
        self.peek_after_space()
    }

    /// [`Reader::peek`] from a byte that may be whitespace.
    fn peek_after_space(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.pos += 1;
        }
        None
    }

    #[inline]
    fn eat(&mut self, want: u8) -> Option<()> {
        (self.peek()? == want).then(|| self.pos += 1)
    }

    /// The end of the text: only whitespace left.
    pub(crate) fn end(mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let b = self.bytes();
        (b.get(self.pos..self.pos + word.len())? == word).then(|| self.pos += word.len())
    }

    /// Consumes a `null` when one is next.
    #[inline]
    pub(crate) fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(true)
        } else {
            Some(false)
        }
    }

    pub(crate) fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// A string without escapes or control characters, borrowed from the text.
    ///
    /// The readers' hottest path (every member name and string value of every VM's texts):
    /// the position is kept in a local and written back once, the words are read without a
    /// second bounds check, and the slice is taken without re-checking character boundaries,
    /// which through WASM cost about as much again as the scan itself.
    #[inline]
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        let mut pos = self.pos;
        // The texts are rendered compactly: the quote is usually the very next byte.
        while *b.get(pos)? != b'"' {
            if !matches!(b[pos], b' ' | b'\n' | b'\r' | b'\t') {
                return None;
            }
            pos += 1;
        }
        pos += 1;
        let start = pos;
        // Eight bytes at a time (the word tests of `memchr`): most of the text is in strings,
        // and most strings are shorter than a word, so the word also says where the first
        // quote, backslash or control character is, without a byte loop.
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        while pos + 8 <= b.len() {
            // SAFETY: `pos + 8 <= b.len()`, so the eight bytes are inside `b`; an unaligned
            // read is what `read_unaligned` is for.
            let w = u64::from_le(unsafe { b.as_ptr().add(pos).cast::<u64>().read_unaligned() });
            let quote = w ^ (LO * u64::from(b'"'));
            let slash = w ^ (LO * u64::from(b'\\'));
            // A zero byte in `quote`/`slash`, or a byte below 0x20 in `w`. A borrow can mark
            // bytes above a real match, never below it: the lowest mark is exact.
            let special = ((quote.wrapping_sub(LO) & !quote)
                | (slash.wrapping_sub(LO) & !slash)
                | (w.wrapping_sub(LO * 0x20) & !w))
                & HI;
            if special != 0 {
                pos += (special.trailing_zeros() / 8) as usize;
                break;
            }
            pos += 8;
        }
        loop {
            let c = *b.get(pos)?;
            if c == b'"' {
                self.pos = pos + 1;
                // SAFETY: `start - 1` and `pos` hold ASCII quotes, so `start..pos` begins and
                // ends on character boundaries of the `str` that `b` is.
                return Some(unsafe { self.text.get_unchecked(start..pos) });
            }
            if c == b'\\' || c < 0x20 {
                return None;
            }
            pos += 1;
        }
    }

    /// A string, borrowed from the text when it has no escape; one with escapes is decoded by
    /// serde_json (so exactly as serde would), and one that is not valid JSON is declined.
    pub(crate) fn cow_str(&mut self) -> Option<std::borrow::Cow<'a, str>> {
        self.peek()?;
        let start = self.pos;
        if let Some(s) = self.str() {
            return Some(std::borrow::Cow::Borrowed(s));
        }
        // Find the closing quote, stepping over each escaped character.
        let b = self.bytes();
        self.pos = start + 1;
        loop {
            match *b.get(self.pos)? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        serde_json::from_str::<String>(self.text.get(start..self.pos)?)
            .ok()
            .map(std::borrow::Cow::Owned)
    }

    /// A non-negative integer that fits `u64` (no sign, fraction or exponent).
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.peek()?;
        let b = self.bytes();
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(&c) = b.get(self.pos) {
            if !c.is_ascii_digit() {
                break;
            }
            // 19 digits always fit in u64, so no overflow check (in WASM `checked_mul` is a
            // 128-bit multiply call); a longer number is declined.
            n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            self.pos += 1;
        }
        let digits = self.pos - start;
        // A leading zero only alone; a fraction or exponent is not an integer here.
        if digits == 0
            || digits > 19
            || (digits > 1 && b[start] == b'0')
            || matches!(b.get(self.pos), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        Some(n)
    }

    /// Skips a number of any JSON form.
    fn skip_number(&mut self) -> Option<()> {
        let b = self.bytes();
        let digits = |r: &mut Self| {
            let s = r.pos;
            while b.get(r.pos).is_some_and(u8::is_ascii_digit) {
                r.pos += 1;
            }
            (r.pos > s).then_some(r.pos - s)
        };
        if b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let start = self.pos;
        let n = digits(self)?;
        if n > 1 && b[start] == b'0' {
            return None;
        }
        if b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            digits(self)?;
        }
        if matches!(b.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(b.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self)?;
        }
        Some(())
    }

    /// Skips any value (its strings too must be plain).
    pub(crate) fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.str().map(drop),
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(Self::skip),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => None,
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// An object: `member` is called with each member's name, positioned at its value, which
    /// it must consume.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek()? != b'}' {
            loop {
                let name = self.str()?;
                // Usually right after the name's quote.
                if self.bytes().get(self.pos) == Some(&b':') {
                    self.pos += 1;
                } else {
                    self.eat(b':')?;
                }
                member(self, name)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Some(())
    }

    /// An array: `item` is called positioned at each element, which it must consume.
    pub(crate) fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek()? != b']' {
            loop {
                item(self)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b']' => break,
                    _ => return None,
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Some(())
    }
}

/// Members a caller reads, to refuse a repeated one as serde's derived structs do ("duplicate
/// field"): bit `i` for the caller's member `i`.
#[derive(Default)]
pub(crate) struct Seen(u32);

impl Seen {
    /// Whether member `bit` was seen.
    #[inline]
    pub(crate) fn has(&self, bit: u32) -> bool {
        self.0 & (1 << bit) != 0
    }

    /// Marks member `bit`; `None` when it was seen before.
    #[inline]
    pub(crate) fn first(&mut self, bit: u32) -> Option<()> {
        let m = 1 << bit;
        (self.0 & m == 0).then(|| self.0 |= m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(text: &str) -> bool {
        let mut r = Reader::new(text);
        r.skip().is_some() && r.end().is_some()
    }

    #[test]
    fn skips_what_json_allows_and_nothing_else() {
        for ok in [
            "null",
            " true ",
            "false",
            "0",
            "-0.5e+10",
            "12E3",
            r#""plain é""#,
            "[]",
            "{}",
            r#"{"a":[1,{"b":null}],"c":{"d":"e"}}"#,
            "[ 1 , 2 ]",
            "{ \"a\" : 1 ,\t\"b\"\r\n:\n{ } }",
        ] {
            assert!(skips(ok), "{ok}");
        }
        for bad in [
            "",
            "nul",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "[1 2]",
            "{\"a\"1}",
            "{\"a\"\u{1}:1}",
            "[\u{1}1]",
            r#""esc\"aped""#,
            "\"raw\ncontrol\"",
            "\"open",
            "{} x",
            "+1",
        ] {
            assert!(!skips(bad), "{bad}");
        }
    }

    #[test]
    fn deep_nesting_is_declined_not_recursed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(!skips(&deep));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(skips(&ok));
        assert!(!skips(&format!("[{ok}]")));
    }

    #[test]
    fn strings_of_every_length_end_at_their_quote() {
        for n in 0..40 {
            for tail in ["", "é", "😀x"] {
                let body = format!("{}{tail}", "a".repeat(n));
                let text = format!("\"{body}\",1");
                let mut r = Reader::new(&text);
                assert_eq!(r.str(), Some(body.as_str()), "{text}");
                for bad in ['\\', '\n', '\u{1f}'] {
                    let text = format!("\"{}{bad}{}\"", "a".repeat(n), "b".repeat(n % 9));
                    assert_eq!(Reader::new(&text).str(), None, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn integers_are_plain() {
        let read = |t: &str| Reader::new(t).u64();
        assert_eq!(read("0"), Some(0));
        assert_eq!(read(" 32768"), Some(32768));
        assert_eq!(read("9999999999999999999"), Some(9_999_999_999_999_999_999));
        // Declined (serde then reads what fits).
        for bad in [
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "1.0",
            "1e3",
            "01",
            "\"1\"",
            "",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }
}

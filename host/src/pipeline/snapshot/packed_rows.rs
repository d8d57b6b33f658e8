//! One child kind's rows packed in one byte buffer, each VM's rows one after the other, read
//! back in order as they were kept.
//!
//! Why: at 100k VMs with children the snapshot keeps ~1M rows from the NetBox read to the end
//! of the rules, through a rerun's memory peak; as fixed-size structs they were ~640 bytes a VM
//! (ids, optional numbers and spans of 8-16 bytes each, most of them small or absent). Packed,
//! every number is a LEB128 varint, an id is the difference from the VM's row before it, and a
//! `last_updated` the difference from the one before it (a VM's children are made together).
//!
//! Each encoding is total: every value the fixed-size row can hold comes back as it was (the
//! unit tests go through the edges: zero, `u64::MAX`, absent, empty).
//!
//! Edges: bytes in and out; knows nothing of NetBox. The kinds say which fields they write
//! ([`PackedRow`]).

/// A kind's kept row, written to and read from a VM's run of bytes.
pub trait PackedRow: Sized {
    fn write(&self, w: &mut RowWriter<'_>);
    fn read(r: &mut RowReader<'_>) -> Self;
}

/// Writes one VM's rows: the ids and `last_updated` micros relative to the row before.
pub struct RowWriter<'a> {
    out: &'a mut Vec<u8>,
    prev_id: u64,
    prev_micros: u64,
}

impl<'a> RowWriter<'a> {
    /// A writer of one VM's rows (the first row's id and micros are written whole).
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        RowWriter {
            out,
            prev_id: 0,
            prev_micros: 0,
        }
    }

    pub(super) fn row<R: PackedRow>(&mut self, row: &R) {
        row.write(self);
    }

    fn varint(&mut self, mut v: u128) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(byte);
                return;
            }
            self.out.push(byte | 0x80);
        }
    }

    /// A row's id. Rows are written in id order per VM, so the difference is small; a row out
    /// of order still comes back (the difference wraps).
    pub(super) fn id(&mut self, id: u64) {
        self.varint(u128::from(id.wrapping_sub(self.prev_id)));
        self.prev_id = id;
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.varint(u128::from(v));
    }

    /// `None` as 0, a value as itself plus one (in 128 bits: `u64::MAX` stays apart).
    pub(super) fn opt_u64(&mut self, v: Option<u64>) {
        self.varint(v.map_or(0, |v| u128::from(v) + 1));
    }

    /// A `u32` index where `u32::MAX` means none (as 0; others plus one).
    pub(super) fn index(&mut self, i: u32) {
        self.varint(if i == u32::MAX { 0 } else { u128::from(i) + 1 });
    }

    pub(super) fn opt_bool(&mut self, v: Option<bool>) {
        self.out.push(match v {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
    }

    /// A text's place `(start, len)` in the kind's pool, `None` for no text.
    pub(super) fn span(&mut self, span: Option<(u32, u32)>) {
        match span {
            None => self.varint(0),
            Some((start, len)) => {
                self.varint(u128::from(len) + 1);
                self.varint(u128::from(start));
            }
        }
    }

    /// A `last_updated`: none; micros, as the zigzag difference from the VM's micros before
    /// (odd codes); or a text's place (even codes from 2).
    pub(super) fn stamp(&mut self, stamp: StampCode) {
        match stamp {
            StampCode::None => self.varint(0),
            StampCode::Micros(m) => {
                let diff = m.wrapping_sub(self.prev_micros) as i64;
                let zigzag = ((diff << 1) ^ (diff >> 63)) as u64;
                self.varint(1 + 2 * u128::from(zigzag));
                self.prev_micros = m;
            }
            StampCode::Text { start, len } => {
                self.varint(2 + 2 * u128::from(len));
                self.varint(u128::from(start));
            }
        }
    }
}

/// Writes `row` alone after `key`: a kind's rows as their pages arrive, before they are sorted
/// by VM (read back one at a time, in any order, by [`read_alone`]). Its id and micros are
/// written whole, relative to no other row.
pub(super) fn write_alone<R: PackedRow>(out: &mut Vec<u8>, key: u64, row: &R) {
    let mut w = RowWriter::new(out);
    w.u64(key);
    w.row(row);
}

/// The key and the row [`write_alone`] wrote at `at`, and where the row after it starts.
pub(super) fn read_alone<R: PackedRow>(bytes: &[u8], at: usize) -> (u64, R, usize) {
    let mut r = RowReader::new(&bytes[at..]);
    let key = r.u64();
    let row = R::read(&mut r);
    (key, row, at + r.pos)
}

/// A `last_updated` as a row keeps it (see the kinds' `Stamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampCode {
    None,
    Micros(u64),
    Text { start: u32, len: u32 },
}

/// Reads one VM's rows back, in the order they were written.
#[derive(Debug, Clone)]
pub struct RowReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    prev_id: u64,
    prev_micros: u64,
    /// Whether `last_updated` is decoded (else skipped, read as none).
    stamps: bool,
}

impl<'a> RowReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        RowReader {
            bytes,
            pos: 0,
            prev_id: 0,
            prev_micros: 0,
            stamps: true,
        }
    }

    /// A reader that skips every `last_updated` over (read as [`StampCode::None`]): for the
    /// memo's key, which never holds one. Why: decoding a stamp (a zigzag difference from the
    /// row before, the first row's micros whole, ~8 bytes) only to drop it was ~7% of a
    /// memoized rerun's keys; skipping reads its bytes' high bits alone.
    pub(super) fn without_stamps(bytes: &'a [u8]) -> Self {
        RowReader {
            stamps: false,
            ..RowReader::new(bytes)
        }
    }

    /// The next row, or `None` at the end of the VM's bytes.
    pub(super) fn next_row<R: PackedRow>(&mut self) -> Option<R> {
        (self.pos < self.bytes.len()).then(|| R::read(self))
    }

    // The bytes are this module's own writing: a read past their end is a bug, and indexing
    // panics on it rather than making up a value.
    #[inline]
    fn varint(&mut self) -> u128 {
        // Most values (id differences, lengths, indexes) fit in one byte.
        let first = self.bytes[self.pos];
        if first & 0x80 == 0 {
            self.pos += 1;
            return u128::from(first);
        }
        self.varint_long()
    }

    /// A varint of two bytes or more. One of up to eight bytes (56 bits: a text's place, a
    /// whole id, a stamp's micros) is read as one word, its seven-bit groups joined in three
    /// steps, not a loop per byte: a text's start in its pool takes 3-4 bytes, and every row
    /// has one to three.
    fn varint_long(&mut self) -> u128 {
        if let Some((len, word)) = self.word() {
            let w = word & (u64::MAX >> (64 - 8 * len));
            // Byte pairs to 14 bits, pairs of those to 28, then 56 (each high bit dropped).
            let w = (w & 0x007f_007f_007f_007f) | ((w & 0x7f00_7f00_7f00_7f00) >> 1);
            let w = (w & 0x0000_3fff_0000_3fff) | ((w & 0x3fff_0000_3fff_0000) >> 2);
            let v = (w & 0x0000_0000_0fff_ffff) | ((w & 0x0fff_ffff_0000_0000) >> 4);
            self.pos += len as usize;
            return u128::from(v);
        }
        let mut v = 0u128;
        let mut shift = 0;
        loop {
            let byte = self.bytes[self.pos];
            self.pos += 1;
            v |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// The eight bytes at the reader's place and the length of the varint there, when eight
    /// bytes are left and it ends within them.
    #[inline]
    fn word(&self) -> Option<(u32, u64)> {
        let word = self.bytes.get(self.pos..self.pos + 8)?;
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // A clear high bit ends the varint.
        let ends = !word & 0x8080_8080_8080_8080;
        (ends != 0).then(|| (ends.trailing_zeros() / 8 + 1, word))
    }

    /// Past a varint, not decoding it.
    #[inline]
    fn skip_varint(&mut self) {
        if let Some((len, _)) = self.word() {
            self.pos += len as usize;
            return;
        }
        while self.bytes[self.pos] & 0x80 != 0 {
            self.pos += 1;
        }
        self.pos += 1;
    }

    pub(super) fn id(&mut self) -> u64 {
        let id = self.prev_id.wrapping_add(self.varint() as u64);
        self.prev_id = id;
        id
    }

    pub(super) fn u64(&mut self) -> u64 {
        self.varint() as u64
    }

    pub(super) fn opt_u64(&mut self) -> Option<u64> {
        match self.varint() {
            0 => None,
            v => Some((v - 1) as u64),
        }
    }

    pub(super) fn index(&mut self) -> u32 {
        match self.varint() {
            0 => u32::MAX,
            v => (v - 1) as u32,
        }
    }

    pub(super) fn opt_bool(&mut self) -> Option<bool> {
        let b = self.bytes[self.pos];
        self.pos += 1;
        match b {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        }
    }

    pub(super) fn span(&mut self) -> Option<(u32, u32)> {
        match self.varint() {
            0 => None,
            len => {
                let start = self.varint() as u32;
                Some((start, (len - 1) as u32))
            }
        }
    }

    pub(super) fn stamp(&mut self) -> StampCode {
        if !self.stamps {
            // The code's low bits are in its first byte: 0 is none, odd micros, even from 2 a
            // text (its start follows). The micros before are not kept: this reader decodes
            // no stamp.
            let first = self.bytes[self.pos];
            self.skip_varint();
            if first != 0 && first & 1 == 0 {
                self.skip_varint();
            }
            return StampCode::None;
        }
        match self.varint() {
            0 => StampCode::None,
            code if code % 2 == 1 => {
                let zigzag = ((code - 1) / 2) as u64;
                let diff = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
                let m = self.prev_micros.wrapping_add(diff as u64);
                self.prev_micros = m;
                StampCode::Micros(m)
            }
            code => {
                let len = ((code - 2) / 2) as u32;
                let start = self.varint() as u32;
                StampCode::Text { start, len }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of every field kind, to go through the codec.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        id: u64,
        n: u64,
        opt: Option<u64>,
        index: u32,
        flag: Option<bool>,
        span: Option<(u32, u32)>,
        stamp: StampCode,
        /// A member after the stamp (a reader skipping stamps must still read it).
        after: u64,
    }

    impl PackedRow for Sample {
        fn write(&self, w: &mut RowWriter<'_>) {
            w.id(self.id);
            w.u64(self.n);
            w.opt_u64(self.opt);
            w.index(self.index);
            w.opt_bool(self.flag);
            w.span(self.span);
            w.stamp(self.stamp);
            w.u64(self.after);
        }
        fn read(r: &mut RowReader<'_>) -> Self {
            Sample {
                id: r.id(),
                n: r.u64(),
                opt: r.opt_u64(),
                index: r.index(),
                flag: r.opt_bool(),
                span: r.span(),
                stamp: r.stamp(),
                after: r.u64(),
            }
        }
    }

    fn round_trip(rows: &[Sample]) -> usize {
        let mut bytes = Vec::new();
        let mut w = RowWriter::new(&mut bytes);
        for row in rows {
            w.row(row);
        }
        let mut r = RowReader::new(&bytes);
        let mut back = Vec::new();
        while let Some(row) = r.next_row::<Sample>() {
            back.push(row);
        }
        assert_eq!(back, rows);
        bytes.len()
    }

    #[test]
    fn every_edge_value_comes_back() {
        let edges = [0, 1, 127, 128, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
        let mut rows = Vec::new();
        for (i, &v) in edges.iter().enumerate() {
            let small = u32::try_from(v).unwrap_or(u32::MAX);
            rows.push(Sample {
                id: v,
                n: v,
                opt: Some(v),
                index: small,
                flag: [None, Some(false), Some(true)][i % 3],
                span: Some((small, small)),
                stamp: StampCode::Micros(v),
                after: v,
            });
            rows.push(Sample {
                id: edges[edges.len() - 1 - i],
                n: 0,
                opt: None,
                index: u32::MAX,
                flag: None,
                span: None,
                stamp: StampCode::Text {
                    start: small,
                    len: small,
                },
                after: 1 << 63,
            });
            rows.push(Sample {
                id: v / 2,
                n: 5,
                opt: Some(0),
                index: 0,
                flag: Some(true),
                span: Some((0, 0)),
                stamp: StampCode::None,
                after: 0,
            });
        }
        round_trip(&rows);
        round_trip(&[]);
    }

    /// Every bit length of a number, each read as one word (more bytes follow) and by the
    /// loop (the buffer's last bytes), and the ten-byte codes past 64 bits.
    #[test]
    fn numbers_of_every_length_come_back_mid_buffer_and_at_its_end() {
        let mut values: Vec<u64> = vec![0, u64::MAX];
        for bits in 1..64 {
            values.extend([1u64 << bits, (1u64 << bits) - 1, (1u64 << bits) | 0x55]);
        }
        for v in values {
            let row = Sample {
                id: v,
                n: v,
                opt: Some(v),
                index: u32::try_from(v).unwrap_or(u32::MAX - 1),
                flag: Some(true),
                span: Some((v as u32, (v >> 32) as u32)),
                stamp: StampCode::Micros(v),
                after: v ^ 1,
            };
            round_trip(&[row.clone(), row.clone()]);
            // Alone: its last numbers end the buffer.
            round_trip(&[row]);
        }
    }

    /// A reader without stamps reads every member after a stamp of each form as written, and
    /// each stamp as none; each row's end is where the full reader ends it.
    #[test]
    fn skipping_stamps_still_reads_every_later_member() {
        let micros = 1_765_000_000_000_000u64;
        let stamps = [
            StampCode::None,
            StampCode::Micros(micros),
            StampCode::Micros(micros - 1),
            StampCode::Micros(0),
            StampCode::Micros(u64::MAX),
            StampCode::Micros(micros + 3_000),
            StampCode::Text { start: 0, len: 0 },
            StampCode::Text {
                start: u32::MAX,
                len: 63,
            },
            StampCode::Text {
                start: 70_000,
                len: 64,
            },
            StampCode::Text {
                start: 1,
                len: u32::MAX,
            },
        ];
        let rows: Vec<Sample> = stamps
            .iter()
            .enumerate()
            .map(|(i, &stamp)| Sample {
                id: 1_000 + i as u64,
                n: 1 << (7 * i),
                opt: (i % 2 == 0).then_some(i as u64 * 1_000_003),
                index: if i % 3 == 0 { u32::MAX } else { i as u32 },
                flag: [None, Some(false), Some(true)][i % 3],
                span: Some((3_000_000 + i as u32, 17)),
                stamp,
                after: u64::MAX - i as u64,
            })
            .collect();
        let mut bytes = Vec::new();
        let mut w = RowWriter::new(&mut bytes);
        for row in &rows {
            w.row(row);
        }
        let mut full = RowReader::new(&bytes);
        let mut skipping = RowReader::without_stamps(&bytes);
        for row in &rows {
            assert_eq!(full.next_row::<Sample>().as_ref(), Some(row));
            let skipped = skipping.next_row::<Sample>().expect("a row");
            assert_eq!(
                skipped,
                Sample {
                    stamp: StampCode::None,
                    ..row.clone()
                }
            );
            assert_eq!(skipping.pos, full.pos, "{row:?}");
        }
        assert!(skipping.next_row::<Sample>().is_none());
    }

    #[test]
    fn rows_written_alone_come_back_at_their_offsets_in_any_order() {
        let rows: Vec<Sample> = [u64::MAX, 7, 0]
            .into_iter()
            .map(|v| Sample {
                id: v,
                n: v,
                opt: Some(v),
                index: 3,
                flag: Some(false),
                span: Some((1, 2)),
                stamp: StampCode::Micros(v),
                after: v,
            })
            .collect();
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for (key, row) in rows.iter().enumerate() {
            offsets.push(bytes.len());
            write_alone(&mut bytes, key as u64 * 1000, row);
        }
        for i in [2, 0, 1] {
            let (key, row, next) = read_alone::<Sample>(&bytes, offsets[i]);
            assert_eq!((key, &row), (i as u64 * 1000, &rows[i]));
            assert_eq!(next, offsets.get(i + 1).copied().unwrap_or(bytes.len()));
        }
    }

    #[test]
    fn a_vms_rows_in_id_order_made_together_take_few_bytes() {
        // Ten children of one VM, consecutive ids, a few milliseconds apart.
        let micros = 1_765_000_000_000_000u64;
        let rows: Vec<Sample> = (0..10u64)
            .map(|i| Sample {
                id: 1_000_000 + i,
                n: 1500,
                opt: None,
                index: 0,
                flag: Some(true),
                span: Some((3_000_000 + 17 * i as u32, 17)),
                stamp: StampCode::Micros(micros + 3_000 * i),
                after: 0,
            })
            .collect();
        let len = round_trip(&rows);
        // First row ~26 bytes, each next ~13: far under the 64+ of a fixed-size row.
        assert!(len < 26 + 9 * 14, "{len} bytes");
    }
}

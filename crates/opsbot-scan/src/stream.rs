//! Scanning a byte stream in bounded memory: chunks of [`CHUNK`] bytes with overlapping
//! context, so a 100 MB single-line file needs about 1 MiB of buffer. Generic over
//! [`std::io::Read`]; opening files is the caller's business.
//!
//! A binary input (a NUL in its first [`BINARY_PROBE`] bytes) is scanned as `strings` would
//! show it: runs of at least [`MIN_STRING`] printable ASCII bytes, with the high-confidence
//! rules only ([`Scanner::strings_scanner`]); its findings carry the byte offset of the
//! secret in the input. Memory stays bounded there too (about 2 MiB of runs at a time).

use std::io::{self, Read};

use crate::engine::{Cursor, InputState, MAX_BACK, MULTI_FWD, Region, Scanner, StringPiece};
use crate::finding::{Finding, normalize_path};

/// Bytes owned by one chunk.
pub const CHUNK: usize = 1024 * 1024;
/// Context kept after the owned part of a chunk (a window may extend this far).
const FWD_MARGIN: usize = MULTI_FWD + 16 * 1024;
/// Context kept before the owned part of a chunk.
const BACK_MARGIN: usize = MAX_BACK + 2 * 1024;
/// How many leading bytes are checked for NUL to call an input binary.
pub const BINARY_PROBE: usize = 8 * 1024;
/// Shortest printable run of a binary input that is scanned (as `strings` does).
pub const MIN_STRING: usize = 8;
/// Printable runs of a binary input are scanned in batches of about this many bytes.
const STRINGS_BATCH: usize = 1024 * 1024;
/// A printable run longer than this is cut into pieces that overlap by [`STRINGS_OVERLAP`].
const STRINGS_MAX_RUN: usize = 2 * STRINGS_BATCH;
const STRINGS_OVERLAP: usize = MAX_BACK + MULTI_FWD;
/// Bytes read from a binary input at a time.
const STRINGS_READ: usize = 256 * 1024;

/// What happened to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    Scanned {
        bytes: u64,
    },
    /// A NUL byte in the first [`BINARY_PROBE`] bytes: only its printable strings were
    /// scanned, with the high-confidence rules ([`Scanner::strings_scanner`]).
    Binary,
}

/// Scans everything `reader` yields. `buf` is scratch space reused between calls.
pub fn scan_reader<R: Read>(
    scanner: &Scanner,
    path: &str,
    mut reader: R,
    buf: &mut Vec<u8>,
    out: &mut Vec<Finding>,
) -> io::Result<StreamOutcome> {
    let path = normalize_path(path);
    buf.clear();
    let mut state = InputState::default();
    let mut start = Cursor::default();
    let mut base: u64 = 0;
    let mut own_start = 0usize;
    let mut first = true;
    let target = CHUNK + FWD_MARGIN + BACK_MARGIN;
    loop {
        let want = target.saturating_sub(buf.len());
        let got = read_up_to(&mut reader, buf, want)?;
        let eof = got < want;
        if first {
            first = false;
            let probe = &buf[..buf.len().min(BINARY_PROBE)];
            if memchr::memchr(0, probe).is_some() {
                scan_binary_strings(scanner.strings_scanner(), &path, &mut reader, buf, out)?;
                return Ok(StreamOutcome::Binary);
            }
        }
        let own_end = if eof {
            buf.len()
        } else {
            buf.len() - FWD_MARGIN
        };
        scanner.scan_region(
            &path,
            None,
            Region {
                buf,
                owned: own_start..own_end,
                start,
                base_offset: base,
                line_map: None,
            },
            &mut state,
            out,
        );
        if eof {
            return Ok(StreamOutcome::Scanned {
                bytes: base + buf.len() as u64,
            });
        }
        let drop = own_end - BACK_MARGIN;
        start.advance(&buf[..drop]);
        buf.drain(..drop);
        base += drop as u64;
        own_start = BACK_MARGIN;
    }
}

/// Scans the printable runs of a binary input: `buf` holds its first bytes (already read),
/// `reader` the rest; `buf` is reused as the read buffer. Returns the input's length.
pub fn scan_binary_strings<R: Read>(
    scanner: &Scanner,
    path: &str,
    reader: &mut R,
    buf: &mut Vec<u8>,
    out: &mut Vec<Finding>,
) -> io::Result<u64> {
    scan_der_header(scanner, path, buf, out);
    let mut strings = Strings::new(scanner, path);
    strings.feed(buf, out);
    loop {
        buf.clear();
        let got = read_up_to(reader, buf, STRINGS_READ)?;
        if got == 0 {
            break;
        }
        strings.feed(buf, out);
    }
    Ok(strings.finish(out))
}

/// How many leading bytes of a DER-looking binary are also scanned as base64.
const DER_HEADER: usize = 3 * 1024;

/// A binary that starts like DER (a SEQUENCE with a long-form length: `30 81`–`30 84`) is a
/// key file in its raw form (`.p12`/`.pfx`, a PKCS#8 or PKCS#1 `.der` key). Its first
/// [`DER_HEADER`] bytes are scanned once more as base64, so the rules for base64-encoded DER
/// (`MII…IBAzCC…` for PKCS#12, `MII…IBADANBgkq…` for PKCS#8) find the raw file too, at offset 0.
/// A PKCS#12 keystore counts only when its MAC opens with a well-known password
/// ([`crate::pkcs12::known_password`]): one under a password of its own is not a leaked key.
fn scan_der_header(scanner: &Scanner, path: &str, head: &[u8], out: &mut Vec<Finding>) {
    use base64::Engine as _;
    if !(head.len() >= 64 && head[0] == 0x30 && (0x81..=0x84).contains(&head[1])) {
        return;
    }
    // A keystore is reported only when anyone can open it (`pkcs12` module).
    if crate::pkcs12::looks_like_pfx(head) && crate::pkcs12::known_password(head).is_none() {
        return;
    }
    let text =
        base64::engine::general_purpose::STANDARD.encode(&head[..head.len().min(DER_HEADER)]);
    let pieces = [StringPiece {
        pos: 0,
        input_offset: 0,
    }];
    scanner.scan_strings(
        path,
        None,
        text.as_bytes(),
        &pieces,
        &mut InputState::default(),
        out,
    );
}

/// Printable ASCII, tab and line ends: the bytes of a string in a binary.
static PRINTABLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        t[b] = matches!(b as u8, b' '..=b'~' | b'\t' | b'\n' | b'\r');
        b += 1;
    }
    t
};

/// The printable runs of a binary input, gathered in a bounded buffer and scanned in batches.
struct Strings<'a> {
    scanner: &'a Scanner,
    path: &'a str,
    /// Runs joined by `\n`.
    buf: Vec<u8>,
    pieces: Vec<StringPiece>,
    /// Input offset of the next byte fed.
    offset: u64,
    /// Where the current run starts in `buf`, while inside a printable run.
    run_start: Option<usize>,
    /// The current run was cut (it is long, whatever is left of it in `buf`).
    run_cut: bool,
    state: InputState,
}

impl<'a> Strings<'a> {
    fn new(scanner: &'a Scanner, path: &'a str) -> Self {
        Strings {
            scanner,
            path,
            buf: Vec::with_capacity(STRINGS_BATCH + STRINGS_READ),
            pieces: Vec::new(),
            offset: 0,
            run_start: None,
            run_cut: false,
            state: InputState::default(),
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<Finding>) {
        let n = chunk.len();
        let mut i = 0usize;
        if self.run_start.is_some() {
            // A run carried over from the previous chunk.
            while i < n && PRINTABLE[chunk[i] as usize] {
                i += 1;
            }
            self.buf.extend_from_slice(&chunk[..i]);
            if i < n {
                self.end_run(out);
                i += 1;
            } else if self.buf.len() >= STRINGS_MAX_RUN {
                self.cut_run(self.offset + n as u64, out);
            }
        }
        while i < n {
            while i < n && !PRINTABLE[chunk[i] as usize] {
                i += 1;
            }
            let start = i;
            while i < n && PRINTABLE[chunk[i] as usize] {
                i += 1;
            }
            if start == n {
                break;
            }
            if i < n && i - start < MIN_STRING {
                // A short run that ends here: not a string.
                i += 1;
                continue;
            }
            self.pieces.push(StringPiece {
                pos: self.buf.len(),
                input_offset: self.offset + start as u64,
            });
            self.run_start = Some(self.buf.len());
            self.run_cut = false;
            self.buf.extend_from_slice(&chunk[start..i]);
            if i < n {
                self.end_run(out);
                i += 1;
            } else if self.buf.len() >= STRINGS_MAX_RUN {
                // The run goes on in the next chunk.
                self.cut_run(self.offset + n as u64, out);
            }
        }
        self.offset += n as u64;
    }

    /// A run ended: drop it if short, else close it and scan the batch once it is full.
    fn end_run(&mut self, out: &mut Vec<Finding>) {
        let Some(start) = self.run_start.take() else {
            return;
        };
        if !self.run_cut && self.buf.len() - start < MIN_STRING {
            self.buf.truncate(start);
            self.pieces.pop();
            return;
        }
        self.buf.push(b'\n');
        if self.buf.len() >= STRINGS_BATCH {
            self.flush(out);
        }
    }

    /// The buffer is full in the middle of a run: scan it, keep the run's last bytes as the
    /// context of the next batch. `end` is the input offset just after the buffer's last byte.
    fn cut_run(&mut self, end: u64, out: &mut Vec<Finding>) {
        let start = self.run_start.unwrap_or(0);
        let keep = STRINGS_OVERLAP.min(self.buf.len() - start);
        let tail = self.buf[self.buf.len() - keep..].to_vec();
        self.flush(out);
        self.buf.extend_from_slice(&tail);
        self.pieces.push(StringPiece {
            pos: 0,
            input_offset: end - keep as u64,
        });
        self.run_start = Some(0);
        self.run_cut = true;
    }

    fn flush(&mut self, out: &mut Vec<Finding>) {
        if !self.pieces.is_empty() {
            self.scanner.scan_strings(
                self.path,
                None,
                &self.buf,
                &self.pieces,
                &mut self.state,
                out,
            );
        }
        self.buf.clear();
        self.pieces.clear();
    }

    /// Ends the input: scans what is left and returns the input's length.
    fn finish(mut self, out: &mut Vec<Finding>) -> u64 {
        self.end_run(out);
        self.flush(out);
        self.offset
    }
}

/// Appends up to `want` bytes; returns how many were read (fewer means end of input).
fn read_up_to<R: Read>(reader: &mut R, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let mut total = 0usize;
    while total < want {
        let n = reader
            .by_ref()
            .take((want - total) as u64)
            .read_to_end(buf)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rule::RuleSet;

    fn key() -> String {
        format!("AKIA{}", "Q2W3E4R5T6Y7U2I3")
    }

    #[test]
    fn chunked_scan_finds_secrets_across_chunk_boundaries_with_right_columns() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        // One long line; secrets placed around chunk boundaries.
        let mut data = vec![b'a'; 3 * CHUNK + 100];
        for i in (0..data.len()).step_by(7) {
            data[i] = b' ';
        }
        let positions = [
            10usize,
            CHUNK + BACK_MARGIN - 30,
            2 * CHUNK + BACK_MARGIN - 2,
            2 * CHUNK + BACK_MARGIN + 40,
            3 * CHUNK + 60,
        ];
        for &p in &positions {
            data[p - 1] = b' ';
            data[p..p + 20].copy_from_slice(key().as_bytes());
            data[p + 20] = b' ';
        }
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let outcome = scan_reader(&scanner, "big.js", &data[..], &mut buf, &mut out).unwrap();
        assert_eq!(
            outcome,
            StreamOutcome::Scanned {
                bytes: data.len() as u64
            }
        );
        let mut cols: Vec<u32> = out
            .iter()
            .filter(|f| f.rule_id() == "aws-access-key-id")
            .map(|f| f.column)
            .collect();
        cols.sort();
        let mut want: Vec<u32> = positions.iter().map(|&p| p as u32 + 1).collect();
        want.sort();
        assert_eq!(cols, want);
        assert!(buf.capacity() < 4 * CHUNK, "buffer stays bounded");
    }

    /// Bytes that look like compiled code: no printable run of 8 or more.
    fn binary_noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 5 == 0 { 0 } else { (x % 256) as u8 }
            })
            .collect()
    }

    #[test]
    fn binary_input_strings_are_scanned_with_byte_offsets() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        let first = CHUNK + FWD_MARGIN + BACK_MARGIN;
        let mut data = binary_noise(first + 3 * STRINGS_READ);
        // A key near the start (inside the first read), one whose string straddles the end
        // of the first read (3 bytes of it there), one past several reads.
        let at = [100usize, first - 3, first + 2 * STRINGS_READ + 77];
        for &p in &at {
            let s = format!("\0key={}\0", key());
            data[p - 5..p - 5 + s.len()].copy_from_slice(s.as_bytes());
        }
        let mut out = Vec::new();
        let outcome = scan_reader(&scanner, "x.bin", &data[..], &mut Vec::new(), &mut out).unwrap();
        assert_eq!(outcome, StreamOutcome::Binary);
        let mut offsets: Vec<u64> = out.iter().filter_map(|f| f.offset).collect();
        offsets.sort();
        assert_eq!(offsets, at.iter().map(|&p| p as u64).collect::<Vec<_>>());
        assert!(
            out.iter()
                .all(|f| f.rule_id() == "aws-access-key-id" && f.line == 0)
        );
        assert_eq!(out[0].secret, "AKIA…");
    }

    #[test]
    fn a_raw_der_private_key_file_is_found_at_offset_zero() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        // PKCS#8 RSA key header (SEQUENCE, version 0, rsaEncryption, OCTET STRING), then
        // key-like bytes: what `openssl pkcs8 -topk8 -nocrypt -outform DER` writes.
        let mut der = vec![
            0x30, 0x82, 0x04, 0xbd, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48,
            0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x04, 0x82, 0x04, 0xa7,
        ];
        der.extend(binary_noise(1200).iter().map(|b| b.wrapping_mul(7) ^ 0x5a));
        let mut out = Vec::new();
        let outcome = scan_reader(&scanner, "k.der", &der[..], &mut Vec::new(), &mut out).unwrap();
        assert_eq!(outcome, StreamOutcome::Binary);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].rule_id(), "private-key-der-base64");
        assert_eq!(out[0].offset, Some(0));
        assert_eq!(out[0].secret, "MIIE…");
        // Not DER at the start: nothing (the same bytes one byte in).
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&der);
        let mut out = Vec::new();
        scan_reader(&scanner, "k.bin", &shifted[..], &mut Vec::new(), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn binary_strings_use_only_high_confidence_rules_and_runs_of_eight() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        // A generic password assignment is found in text, not in a binary's strings.
        let text = "db_password = \"Hx9qL2vT7mQ8wZ\"\n";
        assert!(!scanner.scan_bytes("a.py", text.as_bytes()).is_empty());
        let mut data = binary_noise(4096);
        data[10..10 + text.len()].copy_from_slice(text.as_bytes());
        let mut out = Vec::new();
        scan_reader(&scanner, "x.bin", &data[..], &mut Vec::new(), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        assert!(
            scanner
                .strings_scanner()
                .rules()
                .all(crate::engine::is_high_confidence)
        );
        assert!(scanner.strings_scanner().rules().count() > 100);
    }

    #[test]
    fn a_long_printable_run_in_a_binary_is_cut_with_overlap_and_found_once() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        let mut data = vec![0u8; 16];
        let run_start = data.len();
        data.extend(std::iter::repeat_n(b'.', 3 * STRINGS_MAX_RUN));
        data.extend(binary_noise(100));
        // The run is cut at read boundaries (the first read is a text chunk, then
        // STRINGS_READ at a time): put a key across every one of them, and one inside.
        let first = CHUNK + FWD_MARGIN + BACK_MARGIN;
        let mut at: Vec<usize> = (0..)
            .map(|k| first + k * STRINGS_READ - 10)
            .take_while(|&p| p + 40 < run_start + 3 * STRINGS_MAX_RUN)
            .collect();
        at.push(first + 100);
        at.sort();
        for &p in &at {
            data[p - 1] = b' ';
            data[p..p + 20].copy_from_slice(key().as_bytes());
            data[p + 20] = b' ';
        }
        let mut buf = Vec::new();
        let mut out = Vec::new();
        scan_reader(&scanner, "x.bin", &data[..], &mut buf, &mut out).unwrap();
        let mut offsets: Vec<u64> = out.iter().filter_map(|f| f.offset).collect();
        offsets.sort();
        assert_eq!(offsets, at.iter().map(|&p| p as u64).collect::<Vec<_>>());
        assert!(buf.capacity() < 4 * CHUNK, "read buffer stays bounded");
    }

    #[test]
    fn line_numbers_count_across_chunks() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        let mut text = String::new();
        for i in 0..200_000 {
            text.push_str(&format!("line {i} nothing here\n"));
        }
        text.push_str(&format!("  id = {}\n", key()));
        let lines = text.lines().count() as u32;
        let mut out = Vec::new();
        scan_reader(&scanner, "f", text.as_bytes(), &mut Vec::new(), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].line, lines);
        assert_eq!(out[0].column, 8);
    }
}

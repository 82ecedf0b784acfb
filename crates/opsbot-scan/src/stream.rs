//! Scanning a byte stream in bounded memory: chunks of [`CHUNK`] bytes with overlapping
//! context, so a 100 MB single-line file needs about 1 MiB of buffer. Generic over
//! [`std::io::Read`]; opening files is the caller's business.

use std::io::{self, Read};

use crate::engine::{Cursor, InputState, MAX_BACK, MULTI_FWD, Region, Scanner};
use crate::finding::{Finding, normalize_path};

/// Bytes owned by one chunk.
pub const CHUNK: usize = 1024 * 1024;
/// Context kept after the owned part of a chunk (a window may extend this far).
const FWD_MARGIN: usize = MULTI_FWD + 16 * 1024;
/// Context kept before the owned part of a chunk.
const BACK_MARGIN: usize = MAX_BACK + 2 * 1024;
/// How many leading bytes are checked for NUL to call an input binary.
pub const BINARY_PROBE: usize = 8 * 1024;

/// What happened to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    Scanned {
        bytes: u64,
    },
    /// A NUL byte in the first [`BINARY_PROBE`] bytes: not scanned.
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
            .filter(|f| f.rule_id == "aws-access-key-id")
            .map(|f| f.column)
            .collect();
        cols.sort();
        let mut want: Vec<u32> = positions.iter().map(|&p| p as u32 + 1).collect();
        want.sort();
        assert_eq!(cols, want);
        assert!(buf.capacity() < 4 * CHUNK, "buffer stays bounded");
    }

    #[test]
    fn binary_input_is_skipped() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap());
        let mut data = b"\x00\x01binary".to_vec();
        data.extend(key().as_bytes());
        let mut out = Vec::new();
        let outcome = scan_reader(&scanner, "x.bin", &data[..], &mut Vec::new(), &mut out).unwrap();
        assert_eq!(outcome, StreamOutcome::Binary);
        assert!(out.is_empty());
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

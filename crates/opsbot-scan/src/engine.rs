//! The matching engine: pure functions from bytes to [`Finding`]s. No I/O here.
//!
//! Every rule keyword is found first ([`crate::keywords`]: ASCII case-insensitive,
//! overlapping occurrences included). Only the
//! rules whose keyword occurs run their regex, and only on a bounded window around the
//! keyword (its line, at most [`MAX_BACK`] before and [`MAX_FWD`] after; multi-line rules
//! see [`MULTI_FWD`] after). Regexes compile on first use, so a scan that meets few
//! keywords compiles few regexes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use memchr::{memchr, memchr_iter, memmem, memrchr};

use crate::finding::{
    Finding, Fingerprint, Masked, RuleLabel, fingerprint, mask, normalize_path, shannon_entropy,
};
use crate::keywords::Keywords;
use crate::placeholder::{is_run_placeholder, longest_run};
use crate::rule::{LazyRegex, Rule, RuleSet};

/// Bytes before a keyword that a single-line window may reach back.
pub const MAX_BACK: usize = 2 * 1024;
/// Bytes after a keyword that a single-line window may reach.
pub const MAX_FWD: usize = 8 * 1024;
/// Bytes after a keyword that a multi-line rule's window may reach.
pub const MULTI_FWD: usize = 16 * 1024;

const ALLOW_MARKERS: [&[u8]; 2] = [b"opsbot:allow", b"gitleaks:allow"];

/// A generic rule's value holding a typed run this long (in steps: `abcdefg`, `1234567`) is a
/// made-up value, not a generated secret. Generic rules have no format to go by, so they
/// need random-looking values; specific rules keep such values (documentation tokens in a
/// real format are worth a finding).
pub const GENERIC_MAX_RUN: usize = 5;

pub use crate::keywords::DFA_AFTER_BYTES;

/// A compiled scanner over a [`RuleSet`]. Cheap to share between threads (`&Scanner`).
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<Arc<Rule>>,
    global_allowlist: Vec<Arc<LazyRegex>>,
    global_match_allowlist: Vec<Arc<LazyRegex>>,
    /// Distinct keywords (lowercase), indexed like `pattern_rules`.
    keywords: Keywords,
    /// Keyword pattern index → rules that use it.
    pattern_rules: Vec<Vec<u32>>,
    /// The high-confidence subset used on the strings of binary inputs, built on first use.
    strings: OnceLock<Box<Scanner>>,
    /// Each rule's id, description and severity, shared by its findings (indexed like
    /// `rules`).
    names: Vec<Arc<RuleLabel>>,
    /// For each rule, the rules it is reported instead of on an overlapping secret
    /// ([`Rule::refines`] resolved to indices; ids of rules not loaded are ignored).
    refines: Vec<Vec<u32>>,
}

/// Whether a rule is trusted on the printable strings of a binary file: a specific format
/// (not a generic name-next-to-a-value rule) whose leak is serious (severity high or
/// critical). Strings pulled out of compiled code are full of random-looking bytes, so only
/// rules that match a token's own documented shape take part.
pub fn is_high_confidence(rule: &Rule) -> bool {
    !rule.generic && rule.severity >= crate::rule::Severity::High
}

/// One piece of a strings buffer (see [`Scanner::scan_strings`]): the bytes from `pos` up to
/// the next piece's `pos` are the input's bytes from `input_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringPiece {
    pub pos: usize,
    pub input_offset: u64,
}

/// Position of a byte: 0-based line index and the characters since the line start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub line: u64,
    pub col: u64,
}

impl Cursor {
    /// Moves the cursor over `bytes`.
    pub fn advance(&mut self, bytes: &[u8]) {
        let mut last_nl = None;
        let mut newlines = 0u64;
        for i in memchr_iter(b'\n', bytes) {
            newlines += 1;
            last_nl = Some(i);
        }
        match last_nl {
            Some(i) => {
                self.line += newlines;
                self.col = count_chars(&bytes[i + 1..]);
            }
            None => self.col += count_chars(bytes),
        }
    }
}

fn count_chars(bytes: &[u8]) -> u64 {
    // Count bytes that are not UTF-8 continuation bytes (0b10xx_xxxx).
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64
}

/// Line number mapping for a buffer made of added diff lines joined by `\n`.
#[derive(Debug, Clone, Copy)]
pub struct LinePiece {
    /// Real 1-based line number in the file.
    pub line: u32,
    /// Characters of that line that precede this piece (pieces of a very long line).
    pub col_offset: u32,
}

/// A region of a larger input to scan (used by streaming and diff scanning).
#[derive(Debug)]
pub struct Region<'a> {
    pub buf: &'a [u8],
    /// Only keyword hits starting in this range are processed; the rest is context.
    pub owned: std::ops::Range<usize>,
    /// Position of `buf[0]` in the whole input.
    pub start: Cursor,
    /// Absolute byte offset of `buf[0]` in the whole input (for de-duplication).
    pub base_offset: u64,
    /// For diff buffers: line index within `buf` → real line.
    pub line_map: Option<&'a [LinePiece]>,
}

/// Per-input state carried across the regions of one input (streaming chunks).
#[derive(Debug, Default)]
pub struct InputState {
    /// (rule, input offset) of the secrets already reported (FxHash: keys are small
    /// integers, hashed once per regex match).
    seen: rustc_hash::FxHashSet<(u32, u64)>,
    /// Entries of `seen` below this input offset have been dropped.
    pruned_to: u64,
    /// The input's path and commit, shared by its findings.
    path: Option<Arc<str>>,
    commit: Option<Arc<str>>,
}

/// `text` as a shared string, reusing `slot`'s when it holds the same text.
fn shared(slot: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match slot {
        Some(s) if **s == *text => Arc::clone(s),
        _ => Arc::clone(slot.insert(Arc::from(text))),
    }
}

impl InputState {
    /// Forgets secrets that start before `offset`: a region starting there cannot report
    /// them again, so memory stays bounded by one region's hits on a long stream.
    fn prune_before(&mut self, offset: u64) {
        if offset > self.pruned_to {
            self.pruned_to = offset;
            if !self.seen.is_empty() {
                self.seen.retain(|&(_, o)| o >= offset);
                if self.seen.capacity() > 4 * self.seen.len().max(1024) {
                    self.seen.shrink_to_fit();
                }
            }
        }
    }
}

struct Accepted {
    offset: usize,
    end: usize,
    rule: u32,
    secret_masked: Masked,
    fingerprint: Fingerprint,
}

impl Scanner {
    /// Builds the keyword automaton. Regexes are compiled lazily.
    pub fn new(rules: &RuleSet) -> Self {
        Self::from_parts(
            rules.rules.clone(),
            rules.global_allowlist.clone(),
            rules.global_match_allowlist.clone(),
        )
    }

    fn from_parts(
        rules: Vec<Arc<Rule>>,
        global_allowlist: Vec<Arc<LazyRegex>>,
        global_match_allowlist: Vec<Arc<LazyRegex>>,
    ) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (ri, rule) in rules.iter().enumerate() {
            for kw in &rule.keywords {
                let idx = *index.entry(kw.as_str()).or_insert_with(|| {
                    patterns.push(kw.clone());
                    pattern_rules.push(Vec::new());
                    patterns.len() - 1
                });
                let ri = ri as u32;
                if !pattern_rules[idx].contains(&ri) {
                    pattern_rules[idx].push(ri);
                }
            }
        }
        drop(index);
        let names = rules
            .iter()
            .map(|r| {
                Arc::new(RuleLabel {
                    id: r.id.clone(),
                    description: r.description.clone(),
                    severity: r.severity,
                })
            })
            .collect();
        let by_id: HashMap<&str, u32> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i as u32))
            .collect();
        let refines = rules
            .iter()
            .map(|r| {
                r.refines
                    .iter()
                    .filter_map(|id| by_id.get(id.trim()).copied())
                    .collect()
            })
            .collect();
        Scanner {
            refines,
            rules,
            global_allowlist,
            global_match_allowlist,
            keywords: Keywords::new(patterns),
            pattern_rules,
            strings: OnceLock::new(),
            names,
        }
    }

    /// The scanner for the printable strings of binary inputs: the rules of this one that
    /// [`is_high_confidence`] accepts (built once, sharing the compiled regexes).
    pub fn strings_scanner(&self) -> &Scanner {
        self.strings
            .get_or_init(|| Box::new(self.subset(is_high_confidence)))
    }

    /// A scanner holding one rule of `set` (and the global allowlist), for checking examples.
    pub fn for_rule(set: &RuleSet, id: &str) -> Option<Self> {
        let rule = set.rules.iter().find(|r| r.id == id)?.clone();
        Some(Self::from_parts(
            vec![rule],
            set.global_allowlist.clone(),
            set.global_match_allowlist.clone(),
        ))
    }

    /// A scanner holding the rules of this one that `keep` accepts (sharing their compiled
    /// regexes), e.g. the high-confidence rules used on the strings of binary files.
    pub fn subset(&self, keep: impl Fn(&Rule) -> bool) -> Self {
        Self::from_parts(
            self.rules.iter().filter(|r| keep(r)).cloned().collect(),
            self.global_allowlist.clone(),
            self.global_match_allowlist.clone(),
        )
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| r.as_ref())
    }

    /// Scans a whole in-memory input.
    pub fn scan_bytes(&self, path: &str, data: &[u8]) -> Vec<Finding> {
        let path = normalize_path(path);
        let mut state = InputState::default();
        let mut out = Vec::new();
        self.scan_region(
            &path,
            None,
            Region {
                buf: data,
                owned: 0..data.len(),
                start: Cursor::default(),
                base_offset: 0,
                line_map: None,
            },
            &mut state,
            &mut out,
        );
        out
    }

    /// Scans added lines (`(line number, content)`, content without the newline), e.g. from
    /// a diff. Consecutive lines are joined so multi-line secrets (private keys) are found.
    pub fn scan_added_lines<'a, I>(
        &self,
        path: &str,
        commit: Option<&str>,
        lines: I,
    ) -> Vec<Finding>
    where
        I: IntoIterator<Item = (u32, &'a [u8])>,
    {
        let mut buf = Vec::new();
        let mut map = Vec::new();
        for (line, content) in lines {
            push_line_pieces(&mut buf, &mut map, line, content);
        }
        self.scan_joined_lines(path, commit, &buf, &map)
    }

    /// Scans a buffer built with [`push_line_pieces`].
    pub fn scan_joined_lines(
        &self,
        path: &str,
        commit: Option<&str>,
        buf: &[u8],
        map: &[LinePiece],
    ) -> Vec<Finding> {
        let path = normalize_path(path);
        let mut state = InputState::default();
        let mut out = Vec::new();
        self.scan_region(
            &path,
            commit,
            Region {
                buf,
                owned: 0..buf.len(),
                start: Cursor::default(),
                base_offset: 0,
                line_map: Some(map),
            },
            &mut state,
            &mut out,
        );
        dedup_findings(&mut out);
        out
    }

    /// The raw secrets the scanner captures from `data` (for rule tests only; never print).
    pub fn raw_secrets(&self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut state = InputState::default();
        let mut secrets = Vec::new();
        self.matches(
            Region {
                buf: data,
                owned: 0..data.len(),
                start: Cursor::default(),
                base_offset: 0,
                line_map: None,
            },
            &mut state,
            |_, _, secret| secrets.push(secret.to_vec()),
        );
        secrets
    }

    /// Scans one region of an input; `path` must already be normalised.
    pub fn scan_region(
        &self,
        path: &str,
        commit: Option<&str>,
        region: Region<'_>,
        state: &mut InputState,
        out: &mut Vec<Finding>,
    ) {
        let buf = region.buf;
        let start = region.start;
        let line_map = region.line_map;
        let accepted = self.accept(path, region, state);
        let mut cursor = start;
        let mut at = 0usize;
        for a in accepted {
            cursor.advance(&buf[at..a.offset]);
            at = a.offset;
            let (line, column) = match line_map {
                Some(map) => {
                    let piece = map.get(cursor.line as usize).copied().unwrap_or(LinePiece {
                        line: 0,
                        col_offset: 0,
                    });
                    (
                        piece.line,
                        (cursor.col + 1 + u64::from(piece.col_offset)).min(u64::from(u32::MAX))
                            as u32,
                    )
                }
                None => (
                    (cursor.line + 1).min(u64::from(u32::MAX)) as u32,
                    (cursor.col + 1).min(u64::from(u32::MAX)) as u32,
                ),
            };
            out.push(self.finding(state, path, commit, a, (line, column), None));
        }
    }

    /// Scans the printable strings of a binary input: `buf` holds runs of the input's bytes
    /// (joined by `\n`), `pieces` (sorted by `pos`, the first at 0) say where each run came
    /// from. Findings carry the secret's byte offset in the input and line/column 0. `state`
    /// de-duplicates by input offset across calls (a long run cut with overlap).
    pub fn scan_strings(
        &self,
        path: &str,
        commit: Option<&str>,
        buf: &[u8],
        pieces: &[StringPiece],
        state: &mut InputState,
        out: &mut Vec<Finding>,
    ) {
        if pieces.is_empty() {
            return;
        }
        let mut local = InputState::default();
        let accepted = self.accept(
            path,
            Region {
                buf,
                owned: 0..buf.len(),
                start: Cursor::default(),
                base_offset: 0,
                line_map: None,
            },
            &mut local,
        );
        for a in accepted {
            let i = pieces
                .partition_point(|p| p.pos <= a.offset)
                .saturating_sub(1);
            let piece = pieces[i];
            let offset = piece.input_offset + a.offset.saturating_sub(piece.pos) as u64;
            if !state.seen.insert((a.rule, offset)) {
                continue;
            }
            out.push(self.finding(state, path, commit, a, (0, 0), Some(offset)));
        }
    }

    fn finding(
        &self,
        state: &mut InputState,
        path: &str,
        commit: Option<&str>,
        a: Accepted,
        (line, column): (u32, u32),
        offset: Option<u64>,
    ) -> Finding {
        let mut f = Finding::new(
            Arc::clone(&self.names[a.rule as usize]),
            shared(&mut state.path, path),
            (line, column),
            a.secret_masked,
            a.fingerprint,
        );
        f.commit = commit.map(|c| shared(&mut state.commit, c));
        f.offset = offset;
        f
    }

    /// The accepted secrets of a region, one per position: generic rules yield to specific
    /// ones on an overlapping secret; then the more severe wins, then the first loaded.
    fn accept(&self, path: &str, region: Region<'_>, state: &mut InputState) -> Vec<Accepted> {
        let mut accepted: Vec<Accepted> = Vec::new();
        self.matches(region, state, |rule, offset, secret| {
            let r = &self.rules[rule as usize];
            accepted.push(Accepted {
                offset,
                end: offset + secret.len(),
                rule,
                secret_masked: mask(secret),
                fingerprint: fingerprint(&r.id, path, secret),
            });
        });
        if accepted.is_empty() {
            return accepted;
        }
        // Generic rules yield to specific rules that matched an overlapping secret.
        let specific: Vec<(usize, usize)> = accepted
            .iter()
            .filter(|a| !self.rules[a.rule as usize].generic)
            .map(|a| (a.offset, a.end))
            .collect();
        if specific.len() < accepted.len() {
            accepted.retain(|a| {
                !self.rules[a.rule as usize].generic
                    || !specific.iter().any(|&(s, e)| a.offset < e && s < a.end)
            });
        }
        // A rule that refines another (the provider's name next to a shared prefix) is
        // reported instead of it.
        let refiners: Vec<(usize, usize, u32)> = accepted
            .iter()
            .filter(|a| !self.refines[a.rule as usize].is_empty())
            .map(|a| (a.offset, a.end, a.rule))
            .collect();
        if !refiners.is_empty() && accepted.len() > 1 {
            accepted.retain(|b| {
                !refiners.iter().any(|&(start, end, rule)| {
                    start < b.end
                        && b.offset < end
                        && self.refines[rule as usize].contains(&b.rule)
                        // Two rules that refine each other both stay.
                        && !self.refines[b.rule as usize].contains(&rule)
                })
            });
        }
        // One finding per secret position: specific rules win over generic ones, then the
        // more severe, then the first loaded.
        accepted.sort_by_key(|a| {
            let r = &self.rules[a.rule as usize];
            (a.offset, r.generic, std::cmp::Reverse(r.severity), a.rule)
        });
        accepted.dedup_by_key(|a| a.offset);
        accepted
    }

    /// Core loop: calls `emit(rule, offset in buf, secret)` for each accepted secret.
    fn matches<F>(&self, region: Region<'_>, state: &mut InputState, mut emit: F)
    where
        F: FnMut(u32, usize, &[u8]),
    {
        let buf = region.buf;
        let owned_end = region.owned.end.min(buf.len());
        let owned_start = region.owned.start.min(owned_end);
        // Search up to the owned end plus the longest keyword so hits straddling it count.
        let search_end = (owned_end + self.keywords.max_len()).min(buf.len());
        state.prune_before(region.base_offset);

        // 1. Candidate windows (rule, start, end).
        let mut windows: Vec<(u32, usize, usize)> = Vec::new();
        // The last whole (unclamped) line seen: hits on the same line reuse its bounds.
        let mut line_cache: Option<(usize, usize)> = None;
        // Keywords starting before the owned range are another region's.
        self.keywords
            .for_each(&buf[owned_start..search_end], |s, pattern| {
                let s = owned_start + s;
                if s >= owned_end {
                    return;
                }
                let (ls, le) = match line_cache {
                    Some((ls, le)) if s >= ls && s < le => (ls, le),
                    _ => {
                        let lo_bound = s.saturating_sub(MAX_BACK);
                        let ls = memrchr(b'\n', &buf[lo_bound..s])
                            .map_or(lo_bound, |i| lo_bound + i + 1);
                        let hi_bound = (s + MAX_FWD).min(buf.len());
                        let nl = memchr(b'\n', &buf[s..hi_bound]);
                        let le = nl.map_or(hi_bound, |i| s + i);
                        let whole =
                            (ls > lo_bound || ls == 0) && (nl.is_some() || hi_bound == buf.len());
                        line_cache = whole.then_some((ls, le));
                        (ls, le)
                    }
                };
                for &ri in &self.pattern_rules[pattern] {
                    let rule = &self.rules[ri as usize];
                    let we = if rule.multiline {
                        (s + MULTI_FWD).min(buf.len())
                    } else {
                        le
                    };
                    windows.push((ri, ls, we));
                }
            });
        if windows.is_empty() {
            return;
        }
        // 2. Merge overlapping windows per rule so each byte is searched once per rule.
        windows.sort_unstable();
        let mut merged: Vec<(u32, usize, usize)> = Vec::with_capacity(windows.len());
        for w in windows {
            match merged.last_mut() {
                Some(last) if last.0 == w.0 && w.1 <= last.2 => last.2 = last.2.max(w.2),
                _ => merged.push(w),
            }
        }
        // 3. Run each rule's regex on its windows.
        for (ri, ws, we) in merged {
            let rule = &self.rules[ri as usize];
            let window = &buf[ws..we];
            rule.regex.for_each_match(window, |caps| {
                let Some(g) = caps.get(rule.secret_group) else {
                    return;
                };
                if g.is_empty() {
                    return;
                }
                let (s, e) = (ws + g.start, ws + g.end);
                let secret = &buf[s..e];
                if !state.seen.insert((ri, region.base_offset + s as u64)) {
                    return;
                }
                if let Some(min) = rule.entropy
                    && shannon_entropy(secret) < min
                {
                    return;
                }
                if !rule.require.iter().all(|a| a.is_match(secret)) {
                    return;
                }
                if let Some(whole) = caps.get(0)
                    && rule
                        .match_allowlist
                        .iter()
                        .chain(self.global_match_allowlist.iter().map(|a| a.as_ref()))
                        .any(|a| a.is_match(&window[whole.range()]))
                {
                    return;
                }
                if rule.allowlist.iter().any(|a| a.is_match(secret))
                    || self.global_allowlist.iter().any(|a| a.is_match(secret))
                    || is_run_placeholder(secret)
                    || (rule.generic && longest_run(secret) > GENERIC_MAX_RUN)
                {
                    return;
                }
                if has_allow_marker(buf, s, e) {
                    return;
                }
                emit(ri, s, secret);
            });
        }
    }
}

/// Whether the line(s) holding `buf[s..e]` carry an inline allow comment.
fn has_allow_marker(buf: &[u8], s: usize, e: usize) -> bool {
    let lo_bound = s.saturating_sub(MAX_BACK);
    let ls = memrchr(b'\n', &buf[lo_bound..s]).map_or(lo_bound, |i| lo_bound + i + 1);
    let hi_bound = (e + MAX_FWD).min(buf.len());
    let le = memchr(b'\n', &buf[e..hi_bound]).map_or(hi_bound, |i| e + i);
    let text = &buf[ls..le];
    ALLOW_MARKERS
        .iter()
        .any(|m| memmem::find(text, m).is_some())
}

/// Longest piece of one line put in a diff buffer; longer lines are split with overlap.
pub const MAX_PIECE: usize = 1024 * 1024;
const PIECE_OVERLAP: usize = MAX_BACK + MAX_FWD;

/// Appends one added line to a joined-lines buffer, splitting very long lines into
/// overlapping pieces so memory and regex windows stay bounded.
pub fn push_line_pieces(buf: &mut Vec<u8>, map: &mut Vec<LinePiece>, line: u32, content: &[u8]) {
    let mut start = 0usize;
    let mut col_offset = 0u64;
    loop {
        let end = (start + MAX_PIECE).min(content.len());
        let piece = &content[start..end];
        if !map.is_empty() {
            buf.push(b'\n');
        }
        // A `\n` inside content would break the mapping; diff lines never contain one.
        buf.extend(piece.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        map.push(LinePiece {
            line,
            col_offset: col_offset.min(u64::from(u32::MAX)) as u32,
        });
        if end >= content.len() {
            break;
        }
        let next = end - PIECE_OVERLAP.min(end - start - 1);
        col_offset += count_chars(&content[start..next]);
        start = next;
    }
}

/// Removes findings reported twice (overlapping pieces of one long line).
pub fn dedup_findings(findings: &mut Vec<Finding>) {
    let mut seen = HashSet::new();
    findings.retain(|f| {
        seen.insert((
            Arc::clone(f.rule()),
            f.line,
            f.column,
            f.commit.clone(),
            f.path.clone(),
        ))
    });
}

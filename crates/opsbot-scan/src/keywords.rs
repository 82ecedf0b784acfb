//! The keyword prefilter: every occurrence of every rule keyword (ASCII case-insensitive,
//! overlapping), which decides which rules run their regex and where.
//!
//! Aho-Corasick over the keywords, built on first use: the library's contiguous NFA, quick
//! to build, searches the first [`DFA_AFTER_BYTES`] (a pre-commit hook's whole input); then
//! a `Table` is read off it: the keyword DFA (the NFA's transitions with failure links
//! followed) as a fixed-size array of 16-bit state numbers, quicker to search. It takes
//! about half the cache of the library's own 32-bit DFA, and its fixed size makes every
//! transition a masked index that needs no bounds check, so the walk keeps its states in
//! registers. A long input is cut into four slices whose state chains are advanced
//! together, one byte of each per step: one chain is a sequence of dependent loads, which
//! leaves the CPU idle while a load misses the cache; independent chains fill that time.
//! Both report exactly the library's overlapping matches (a test checks it).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aho_corasick::automaton::{Automaton, OverlappingState, StateID};
use aho_corasick::nfa::{contiguous, noncontiguous};
use aho_corasick::{Anchored, Input, MatchKind};

/// Bytes searched with the keyword NFA before the keyword table is built. The table
/// searches faster but takes ~15 ms more to build over the whole catalogue's keywords, as
/// much as a pre-commit hook's whole scan of a small change. Both report the same matches.
pub const DFA_AFTER_BYTES: usize = 2 * 1024 * 1024;

/// Independent chains advanced together on a long input (`walk` is written out for four).
const LANES: usize = 4;

/// Shortest slice one lane walks: below it, one chain walks the whole input (the lanes'
/// overlaps would cost more than they save).
const MIN_LANE: usize = 256;

/// Bits of a transition's index given to the byte class: a row per state of `1 << CLASS_BITS`
/// entries, so at most that many classes (bytes a keyword holds, folded to lower case, plus
/// one for all the others).
const CLASS_BITS: u32 = 7;
/// Entries of the transition table (8 MiB of address space as `u16`; only the rows of
/// states that exist are ever written or read, so only they become resident).
const TABLE_LEN: usize = 1 << 22;
/// Most states the table holds (and `u16` numbers).
const MAX_STATES: usize = TABLE_LEN >> CLASS_BITS;

/// Every rule keyword, with the automata that find them.
pub struct Keywords {
    patterns: Vec<String>,
    max_len: usize,
    nfa: OnceLock<Option<Box<dyn Automaton + Send + Sync>>>,
    table: OnceLock<Option<Table>>,
    searched: AtomicUsize,
}

impl std::fmt::Debug for Keywords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keywords")
            .field("patterns", &self.patterns.len())
            .field("table", &self.table.get())
            .finish_non_exhaustive()
    }
}

impl Keywords {
    /// Keywords are matched ASCII case-insensitively; empty ones are never reported.
    pub fn new(patterns: Vec<String>) -> Self {
        let max_len = patterns.iter().map(String::len).max().unwrap_or(0);
        Keywords {
            patterns,
            max_len,
            nfa: OnceLock::new(),
            table: OnceLock::new(),
            searched: AtomicUsize::new(0),
        }
    }

    /// Length of the longest keyword in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Calls `each(start, pattern)` for every occurrence of a keyword in `hay`, overlapping
    /// ones included, in no particular order.
    pub fn for_each(&self, hay: &[u8], mut each: impl FnMut(usize, usize)) {
        if self.patterns.is_empty() || hay.is_empty() {
            return;
        }
        if let Some(table) = self.table(hay.len()) {
            table.walk(hay, self.max_len, &mut each);
        } else if let Some(nfa) = self.nfa() {
            let input = Input::new(hay);
            let mut state = OverlappingState::start();
            // An unanchored search over a haystack in memory cannot fail (no match limit).
            while nfa.try_find_overlapping(&input, &mut state).is_ok() {
                let Some(m) = state.get_match() else { break };
                if !m.is_empty() {
                    each(m.start(), m.pattern().as_usize());
                }
            }
        }
    }

    /// The table once [`DFA_AFTER_BYTES`] have been searched (built then, once). `None`
    /// when the keywords need more states or byte classes than it holds: the NFA searches.
    fn table(&self, len: usize) -> Option<&Table> {
        if let Some(table) = self.table.get() {
            return table.as_ref();
        }
        let searched = self
            .searched
            .fetch_add(len, Ordering::Relaxed)
            .saturating_add(len);
        if searched < DFA_AFTER_BYTES {
            return None;
        }
        let nfa = self.nfa()?;
        self.table
            .get_or_init(|| match Table::build(nfa, &self.patterns) {
                Ok(table) => Some(table),
                Err(e) => {
                    tracing::warn!("keyword table not built, the NFA searches: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// The contiguous NFA (the noncontiguous one if the keywords outgrow it): it searches
    /// the first [`DFA_AFTER_BYTES`], and the table is read off it.
    fn nfa(&self) -> Option<&(dyn Automaton + Send + Sync)> {
        self.nfa
            .get_or_init(|| {
                let contiguous = contiguous::NFA::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&self.patterns);
                match contiguous {
                    Ok(nfa) => Some(Box::new(nfa) as Box<dyn Automaton + Send + Sync>),
                    Err(_) => noncontiguous::NFA::builder()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::Standard)
                        .build(&self.patterns)
                        .map(|nfa| Box::new(nfa) as Box<dyn Automaton + Send + Sync>)
                        .map_err(|e| tracing::warn!("keyword automaton not built: {e}"))
                        .ok(),
                }
            })
            .as_deref()
    }
}

/// The keyword DFA as a flat array: the transition from state `s` on byte `b` is
/// `trans[s << CLASS_BITS | classes[b]]`. States are numbered with every match state
/// first, so "is this a match" is `s < matching`.
struct Table {
    classes: [u8; 256],
    trans: Box<[u16; TABLE_LEN]>,
    start: u16,
    matching: u16,
    /// The keywords (length, pattern) ending in match state `s`:
    /// `ends[ends_at[s]..ends_at[s + 1]]`.
    ends_at: Vec<u32>,
    ends: Vec<(u32, u32)>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("matching", &self.matching)
            .field("ends", &self.ends.len())
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Reads the table off `nfa`, the keyword automaton over `patterns`: its transitions
    /// with failure links followed are the DFA's.
    fn build(nfa: &dyn Automaton, patterns: &[String]) -> Result<Table, String> {
        // A keyword's bytes, folded to lower case, each get a class; every other byte
        // shares class 0. Under ASCII case-insensitive matching `A` and `a` lead from every
        // state to the same state, and a byte no keyword holds leads back to the start.
        let mut class_of = [0u8; 256];
        let mut classes = 1usize;
        for &b in patterns.iter().flat_map(|p| p.as_bytes()) {
            let folded = usize::from(b.to_ascii_lowercase());
            if class_of[folded] == 0 {
                if classes == 1 << CLASS_BITS {
                    return Err(format!(
                        "keywords hold more than {} distinct bytes",
                        classes - 1
                    ));
                }
                class_of[folded] = u8::try_from(classes).map_err(|e| e.to_string())?;
                classes += 1;
            }
        }
        let mut table_classes = [0u8; 256];
        // One byte of each class, to ask the NFA with.
        let mut sample = vec![0u8; classes];
        for b in (0..=255u8).rev() {
            let c = class_of[usize::from(b.to_ascii_lowercase())];
            table_classes[usize::from(b)] = c;
            sample[usize::from(c)] = b;
        }

        let start = nfa.start_state(Anchored::No).map_err(|e| e.to_string())?;

        // Every state, in the order first reached from the start, with its row.
        // A state's id is an offset into the automaton's own tables, so below its size in
        // 4-byte words: `index[id]` numbers the states seen (0 = not yet).
        let mut index = vec![0u32; nfa.memory_usage() / 4 + 1];
        let mut number_of = |sid: StateID, order: &mut Vec<StateID>| -> Result<u32, String> {
            let slot = index
                .get_mut(sid.as_usize())
                .ok_or_else(|| format!("state id {} beyond the automaton", sid.as_usize()))?;
            if *slot == 0 {
                order.push(sid);
                *slot = order.len() as u32;
            }
            Ok(*slot - 1)
        };
        let mut order: Vec<StateID> = Vec::new();
        number_of(start, &mut order)?;
        let mut rows: Vec<u32> = Vec::new();
        let mut i = 0;
        while let Some(&sid) = order.get(i) {
            for &b in &sample {
                let next = nfa.next_state(Anchored::No, sid, b);
                rows.push(number_of(next, &mut order)?);
            }
            if order.len() > MAX_STATES {
                return Err(format!("keywords need more than {MAX_STATES} states"));
            }
            i += 1;
        }

        // Renumber: match states first (`by_number` lists them in their new order).
        let mut number = vec![0u16; order.len()];
        let mut by_number: Vec<StateID> = Vec::new();
        let mut next = 0u16;
        for is_match in [true, false] {
            for (n, &sid) in number.iter_mut().zip(&order) {
                if nfa.is_match(sid) == is_match {
                    *n = next;
                    next += 1;
                    if is_match {
                        by_number.push(sid);
                    }
                }
            }
        }
        let matching = u16::try_from(by_number.len()).map_err(|e| e.to_string())?;
        let mut trans: Box<[u16; TABLE_LEN]> = vec![0u16; TABLE_LEN]
            .into_boxed_slice()
            .try_into()
            .map_err(|_| "table allocation".to_owned())?;
        for (old, &n) in number.iter().enumerate() {
            let row = usize::from(n) << CLASS_BITS;
            for (c, &to) in rows[old * classes..(old + 1) * classes].iter().enumerate() {
                trans[row + c] = number[to as usize];
            }
        }
        let mut ends_at = Vec::with_capacity(by_number.len() + 1);
        let mut ends = Vec::new();
        for &sid in &by_number {
            ends_at.push(ends.len() as u32);
            for m in 0..nfa.match_len(sid) {
                let pid = nfa.match_pattern(sid, m);
                ends.push((nfa.pattern_len(pid) as u32, pid.as_u32()));
            }
        }
        ends_at.push(ends.len() as u32);
        Ok(Table {
            classes: table_classes,
            trans,
            start: number[0],
            matching,
            ends_at,
            ends,
        })
    }

    #[inline(always)]
    fn step(&self, s: u16, byte: u8) -> u16 {
        let i = (usize::from(s) << CLASS_BITS) | usize::from(self.classes[usize::from(byte)]);
        self.trans[i & (TABLE_LEN - 1)]
    }

    /// Every overlapping match in `hay`. Lane `k` walks `hay[k·part ..]` up to the next
    /// lane's start plus the longest keyword (so a match that starts in its slice ends in
    /// it) and reports only the matches that start in its slice.
    #[inline(never)]
    fn walk(&self, hay: &[u8], max_len: usize, each: &mut dyn FnMut(usize, usize)) {
        let overlap = max_len.saturating_sub(1);
        let part = hay.len() / LANES;
        if part < MIN_LANE.max(4 * overlap) {
            self.walk_lane(self.start, hay, 0, hay.len(), usize::MAX, each);
            return;
        }
        let hi = |k: usize| {
            if k + 1 == LANES {
                hay.len()
            } else {
                (k + 1) * part + overlap
            }
        };
        let owned = |k: usize| {
            if k + 1 == LANES {
                usize::MAX
            } else {
                (k + 1) * part
            }
        };
        // All lanes are at least `part` long: they advance together for `part` steps, with
        // their states in registers, then each finishes alone.
        let (l0, rest) = hay.split_at(part);
        let (l1, rest) = rest.split_at(part);
        let (l2, rest) = rest.split_at(part);
        let l3 = &rest[..part];
        let m = self.matching;
        let (mut s0, mut s1, mut s2, mut s3) = (self.start, self.start, self.start, self.start);
        for (i, (((&b0, &b1), &b2), &b3)) in l0.iter().zip(l1).zip(l2).zip(l3).enumerate() {
            s0 = self.step(s0, b0);
            s1 = self.step(s1, b1);
            s2 = self.step(s2, b2);
            s3 = self.step(s3, b3);
            if (s0 < m) | (s1 < m) | (s2 < m) | (s3 < m) {
                for (k, s) in [s0, s1, s2, s3].into_iter().enumerate() {
                    self.report(s, k * part + i + 1, owned(k), each);
                }
            }
        }
        for (k, s) in [s0, s1, s2, s3].into_iter().enumerate() {
            self.walk_lane(s, hay, k * part + part, hi(k), owned(k), each);
        }
    }

    fn walk_lane(
        &self,
        mut s: u16,
        hay: &[u8],
        from: usize,
        to: usize,
        owned: usize,
        each: &mut dyn FnMut(usize, usize),
    ) {
        for (pos, &byte) in hay.iter().enumerate().take(to).skip(from) {
            s = self.step(s, byte);
            if s < self.matching {
                self.report(s, pos + 1, owned, each);
            }
        }
    }

    /// Reports the keywords that end at `end` in state `s` (if it matches) and start
    /// before `owned`.
    #[inline(always)]
    fn report(&self, s: u16, end: usize, owned: usize, each: &mut dyn FnMut(usize, usize)) {
        if s >= self.matching {
            return;
        }
        let s = usize::from(s);
        let (Some(&lo), Some(&hi)) = (self.ends_at.get(s), self.ends_at.get(s + 1)) else {
            return;
        };
        for &(len, pattern) in self.ends.get(lo as usize..hi as usize).unwrap_or(&[]) {
            let len = len as usize;
            let start = end - len;
            if len > 0 && start < owned {
                each(start, pattern as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aho_corasick::{AhoCorasick, AhoCorasickKind};

    /// What the library's overlapping iterator reports, sorted.
    fn library(patterns: &[String], hay: &[u8]) -> Vec<(usize, usize)> {
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(patterns)
            .unwrap();
        let mut v: Vec<_> = ac
            .find_overlapping_iter(hay)
            .filter(|m| !m.is_empty())
            .map(|m| (m.start(), m.pattern().as_usize()))
            .collect();
        v.sort_unstable();
        v
    }

    fn ours(kw: &Keywords, hay: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        kw.for_each(hay, |s, p| v.push((s, p)));
        v.sort_unstable();
        v
    }

    /// A deterministic pseudo-random haystack over a small alphabet, so that keywords
    /// occur often, at lane boundaries too.
    fn haystack(len: usize, seed: u64) -> Vec<u8> {
        let alphabet = b"aAbBkKeEyY_-=:tToOnN \n\xc3\xff";
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn nfa_and_lanes_of_the_table_report_what_the_library_does() {
        let patterns: Vec<String> = [
            "key", "api_key", "token", "to", "ab", "a", "bKe", "=:", "ntoken",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (len, seed) in [
            (0, 1),
            (1, 2),
            (100, 3),
            (17_000, 4),
            (70_001, 5),
            (300_000, 6),
        ] {
            let hay = haystack(len, seed);
            let want = library(&patterns, &hay);
            // A fresh set searches with its NFA until DFA_AFTER_BYTES have been searched.
            let kw = Keywords::new(patterns.clone());
            assert_eq!(ours(&kw, &hay), want, "NFA, len {len}");
            kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
            assert_eq!(ours(&kw, &hay), want, "table, len {len}");
            assert_eq!(kw.table.get().is_some_and(Option::is_some), len > 0);
        }
    }

    #[test]
    fn a_keyword_straddling_every_lane_boundary_is_reported_once() {
        let patterns = vec!["secretkey".to_owned(), "key".to_owned()];
        let kw = Keywords::new(patterns.clone());
        kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
        let mut hay = vec![b'.'; 64 * 1024];
        let part = hay.len() / LANES;
        for k in 1..LANES {
            // Starts 3 bytes before lane k's slice: reported by lane k-1 only.
            hay[k * part - 3..k * part + 6].copy_from_slice(b"SecretKey");
        }
        let got = ours(&kw, &hay);
        assert_eq!(got, library(&patterns, &hay));
        assert_eq!(got.len(), 2 * (LANES - 1));
    }

    #[test]
    fn no_keywords_and_empty_keywords_report_nothing() {
        let hay = haystack(10_000, 9);
        assert!(ours(&Keywords::new(Vec::new()), &hay).is_empty());
        let kw = Keywords::new(vec![String::new(), "tok".to_owned()]);
        kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
        assert!(ours(&kw, &hay).iter().all(|&(_, p)| p == 1));
    }

    #[test]
    fn the_builtin_catalogue_fits_the_table() {
        let mut patterns: Vec<String> = crate::rule::embedded_rule_files()
            .flat_map(|(_, file)| file.rules)
            .flat_map(|rule| rule.keywords)
            .map(|k| k.to_lowercase())
            .collect();
        patterns.sort_unstable();
        patterns.dedup();
        assert!(patterns.len() > 1000, "{} keywords", patterns.len());
        // Fails when the catalogue outgrows the table (the scan would fall back to the
        // slower NFA): widen CLASS_BITS or TABLE_LEN then.
        let kw = Keywords::new(patterns.clone());
        Table::build(kw.nfa().unwrap(), &patterns).unwrap();
        let hay = b"export GITHUB_TOKEN=ghp_x AWS_SECRET_ACCESS_KEY=y password: z".repeat(50);
        kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
        let found = ours(&kw, &hay);
        assert!(kw.table.get().is_some_and(Option::is_some));
        assert_eq!(found, library(&patterns, &hay));
        assert!(!found.is_empty());
    }
}

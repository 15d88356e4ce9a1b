//! The thread's last walk, kept to recognize a repeated stack without walking it again.
//! (A walk across compiled Java code also logs one word of each compiled method it crossed,
//! its compile id: code compiled again at the same address has another.)
//!
//! A walk is a chain of dependent loads (rule, return address, next rule, …), so its cost grows
//! with depth however fast each step is. But a walk is a function of its start registers, the
//! stack words it reads and the unwind rules of the code it crosses (`unwind::Reads`). A loop
//! that allocates from one site starts every walk from the same pc and sp; if the words the
//! last walk read are still the same at the same addresses, this walk would read exactly them
//! and take exactly the same steps, so its stack is the last one's. Checking that is one
//! independent load and compare per word, which the CPU overlaps. Any difference (another
//! caller, another depth, a changed frame) falls back to the walk, which logs a new memo.
//!
//! The memo lives in the thread's slot of `cold.rs`, written only by its own thread with the
//! reentrancy guard held; a thread starts with an empty one (`Memo::EMPTY`).

use crate::unwind::{MAX_READS, Reads, Regs};

#[repr(C)]
pub struct Memo {
    pc: usize,
    sp: usize,
    bp: usize,
    /// Stack id of the memorized walk; 0 = none.
    id: u32,
    /// Compare `bp` too (the walk used the starting rbp).
    bp_used: u32,
    n: u32,
    /// The profiler's count of `dlclose`s before the memorized walk.
    generation: u32,
    words: [(usize, usize); MAX_READS],
}

impl Memo {
    /// No walk memorized.
    pub const EMPTY: Memo = Memo {
        pc: 0,
        sp: 0,
        bp: 0,
        id: 0,
        bp_used: 0,
        n: 0,
        generation: 0,
        words: [(0, 0); MAX_READS],
    };

    /// The stack id of the memorized walk if a walk from `regs` would repeat it.
    #[inline]
    pub fn repeat(&self, regs: Regs, generation: u32) -> Option<u32> {
        if self.id == 0
            || generation != self.generation
            || regs.pc != self.pc
            || regs.sp != self.sp
            || (self.bp_used != 0 && regs.bp != self.bp)
        {
            return None;
        }
        let mut same = true;
        for &(addr, value) in &self.words[..(self.n as usize).min(MAX_READS)] {
            // SAFETY: `remember` keeps only complete logs, made on this thread's own stack
            // with every address checked to lie inside it (aligned, in bounds), plus aligned
            // words of HotSpot code blobs inside a code heap's committed part
            // (`hotspot::Witness`); the thread's stack stays mapped while the thread runs, a
            // code heap's committed memory for the life of the JVM (HotSpot never shrinks
            // one), and only this thread reads its memo.
            same &= unsafe { core::ptr::read_volatile(addr as *const usize) } == value;
        }
        same.then_some(self.id)
    }

    /// Keeps the walk from `regs` that `reads` logged and produced stack `id`, if repeatable;
    /// `generation` is the count of `dlclose`s from before the walk.
    pub fn remember(&mut self, regs: Regs, reads: &Reads<'_>, id: u32, generation: u32) {
        self.id = 0;
        let Some(words) = reads.words() else {
            return;
        };
        self.pc = regs.pc;
        self.sp = regs.sp;
        self.bp = regs.bp;
        self.bp_used = reads.bp_used as u32;
        self.n = words.len() as u32;
        self.generation = generation;
        self.words[..words.len()].copy_from_slice(words);
        self.id = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_is_repeated_only_with_the_same_words_and_rules() {
        let word = Box::new(0x1234usize);
        let addr = &*word as *const usize as usize;
        let regs = Regs {
            pc: 0x40_1000,
            sp: 0x7ff0_0000,
            bp: 0,
        };
        // SAFETY: every field of `Memo` is an integer, for which all-zero bytes are valid.
        let mut m: Box<Memo> = Box::new(unsafe { core::mem::zeroed() });
        assert_eq!(m.repeat(regs, 5), None, "an empty memo");
        m.remember(
            regs,
            &Reads::logged(&mut crate::unwind::read_log(), &[(addr, 0x1234)]),
            7,
            5,
        );
        assert_eq!(m.repeat(regs, 5), Some(7));
        assert_eq!(m.repeat(regs, 6), None, "rules forgotten since (a dlclose)");
        assert_eq!(
            m.repeat(
                Regs {
                    sp: regs.sp + 8,
                    ..regs
                },
                5
            ),
            None,
            "another start"
        );
        m.remember(
            regs,
            &Reads::logged(&mut crate::unwind::read_log(), &[(addr, 0x9999)]),
            8,
            5,
        );
        assert_eq!(m.repeat(regs, 5), None, "the word it read has changed");
    }
}

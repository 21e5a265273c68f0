//! Messages that arrive before their height starts, held until it does.
//!
//! They cannot be checked yet — the next height may belong to another epoch,
//! with other hosts — so they are held unverified, in arrival order, up to
//! [`MAX_BUFFERED_MESSAGES`](super::MAX_BUFFERED_MESSAGES), and fully checked
//! when their height starts.

use std::collections::VecDeque;

use super::messages::{Proposal, Vote};

/// A held message.
#[derive(Clone, Debug)]
pub(crate) enum Held {
    /// A proposal; its block is checked again once the height starts.
    Proposal(Proposal),
    /// A vote.
    Vote(Vote),
}

impl Held {
    fn height(&self) -> u64 {
        match self {
            Held::Proposal(p) => p.height,
            Held::Vote(v) => v.height,
        }
    }
}

/// The bounded queue of held messages.
#[derive(Debug)]
pub(crate) struct FutureBuffer {
    capacity: usize,
    held: VecDeque<Held>,
}

impl FutureBuffer {
    /// An empty buffer of `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, held: VecDeque::new() }
    }

    /// Holds `m`; `false` when the buffer is full and `m` was dropped.
    pub fn push(&mut self, m: Held) -> bool {
        if self.held.len() >= self.capacity {
            return false;
        }
        self.held.push_back(m);
        true
    }

    /// Takes the messages of `height`, drops older ones, keeps later ones.
    pub fn take_height(&mut self, height: u64) -> Vec<Held> {
        let mut now = Vec::new();
        self.held.retain(|m| match m.height() {
            h if h < height => false,
            h if h == height => {
                now.push(m.clone());
                false
            }
            _ => true,
        });
        now
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

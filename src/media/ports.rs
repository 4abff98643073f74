//! The pool of local RTP ports: even ports of the configured range, handed
//! out least-recently-used first so a port is not reused while stray packets
//! of its last call may still arrive.

use std::collections::VecDeque;

use crate::config::PortRange;

#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
}

impl PortPool {
    pub fn new(range: PortRange) -> PortPool {
        let first = range.low + range.low % 2;
        PortPool {
            free: (first..=range.high).step_by(2).collect(),
        }
    }

    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub fn give_back(&mut self, port: u16) {
        self.free.push_back(port);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_least_recently_used_first() {
        let mut pool = PortPool::new(PortRange {
            low: 10001,
            high: 10007,
        });
        assert_eq!(pool.available(), 3);
        let a = pool.take().unwrap();
        assert_eq!(a, 10002);
        pool.give_back(a);
        assert_eq!(pool.take(), Some(10004));
        assert_eq!(pool.take(), Some(10006));
        assert_eq!(pool.take(), Some(10002));
        assert_eq!(pool.take(), None);
    }
}

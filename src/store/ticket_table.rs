//! Ticket-key records kept in this process: the `memory:` backend's (its keys are this
//! process's own, rotated like shared ones) and the test doubles'.

use super::{StoreError, TicketRecord, MAX_TICKET_RECORD_BYTES};
use crate::secret::SecretBytes;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Records under their sequence numbers, with the time each is kept until.
#[derive(Default)]
pub struct TicketTable {
    records: Mutex<BTreeMap<u64, (SecretBytes, u64)>>,
}

/// The most records a table holds; beyond it the lowest sequence numbers go.
const MAX_RECORDS: usize = 64;

impl TicketTable {
    pub fn records(&self) -> Vec<TicketRecord> {
        let map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(&seq, (bytes, _))| TicketRecord {
                seq,
                bytes: bytes.clone(),
            })
            .collect()
    }

    pub fn add(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        if bytes.len() > MAX_TICKET_RECORD_BYTES {
            return Err(StoreError::TooLarge);
        }
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(&seq) {
            return Ok(false);
        }
        map.retain(|_, (_, until)| *until >= now);
        while map.len() >= MAX_RECORDS {
            map.pop_first();
        }
        map.insert(seq, (SecretBytes::from(bytes), keep_until));
        Ok(true)
    }

    pub fn drop_records(&self, seqs: &[u64]) {
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for seq in seqs {
            map.remove(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_add_wins_and_expired_records_make_room() {
        let t = TicketTable::default();
        assert_eq!(t.add(1, b"one", 100, 0), Ok(true));
        assert_eq!(t.add(1, b"other", 100, 0), Ok(false));
        assert_eq!(t.records()[0].bytes.as_slice(), b"one");
        assert_eq!(
            t.add(2, &[0; MAX_TICKET_RECORD_BYTES + 1], 100, 0),
            Err(StoreError::TooLarge)
        );
        // Past its keep_until, record 1 goes when another is added.
        assert_eq!(t.add(2, b"two", 300, 200), Ok(true));
        let seqs: Vec<u64> = t.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2]);
        t.drop_records(&[2, 7]);
        assert!(t.records().is_empty());
    }

    #[test]
    fn a_full_table_drops_its_lowest_records() {
        let t = TicketTable::default();
        for seq in 0..(MAX_RECORDS as u64 + 3) {
            assert_eq!(t.add(seq, b"k", 1000, 0), Ok(true));
        }
        let seqs: Vec<u64> = t.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs.len(), MAX_RECORDS);
        assert_eq!(seqs[0], 3);
    }
}

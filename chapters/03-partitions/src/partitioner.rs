//! Choosing a partition for a record: the key decides.
//!
//! A keyed record goes to `(murmur2(key) & 0x7fffffff) % partitions`, bit
//! for bit what the Java client's default partitioner computes, so a key
//! lands in the same partition here as in a real Kafka cluster with the
//! same partition count. A keyless record has no partition it must go to, so the
//! sticky partitioner (KIP-480) keeps sending keyless records to one
//! partition until a batch for it is full, then moves on: fewer, fuller
//! batches than spreading records one by one.

use std::collections::BTreeMap;

// ANCHOR: murmur2
/// Kafka's 32-bit murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`):
/// MurmurHash2 by Austin Appleby with Kafka's seed. The Java code works on
/// `int`s that wrap on overflow and shift right without sign (`>>>`);
/// `u32` with wrapping multiplication is the same arithmetic.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    // Mixing constants chosen by the algorithm's author for good avalanche.
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // exercise-hole: murmur2 | Start with h = SEED ^ len. Mix each 4-byte little-endian chunk k: k *= M; k ^= k >> R; k *= M; h *= M; h ^= k. Then fold the 1 to 3 tail bytes into h (byte 2 << 16, byte 1 << 8, byte 0) and h *= M. Finish: h ^= h >> 13; h *= M; h ^= h >> 15. All multiplications wrap.
    // exercise-hint: This is Kafka's Java `Utils.murmur2` bit for bit: Java's int arithmetic wraps, so every `*` is `wrapping_mul`; `data.chunks_exact(4)` gives the 4-byte chunks and `.remainder()` the tail.
    // exercise-hint: For the tail, Java's switch falls through: with 3 bytes do all three XORs, with 2 the last two, with 1 only `h ^= tail[0]`; then `h = h.wrapping_mul(M)` once. The unit tests hold Java's own outputs for known keys.
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // The last 1 to 3 bytes (Java's switch falls through the cases).
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
    // exercise-end
}

/// The partition Kafka's default partitioner gives a key: the hash with its
/// sign bit cleared (Java's `Utils.toPositive`), modulo the partition count.
/// Clearing the bit rather than taking an absolute value matters: `abs` of
/// `i32::MIN` is negative in Java, which once sent keys to partition -1.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}
// ANCHOR_END: murmur2

// ANCHOR: trait
/// Chooses the partition of each record a producer sends. Implement it to
/// route records your own way (by a field of the value, by region, ...).
pub trait Partitioner {
    /// The partition, in `0..partitions`, for a record of `topic` with this
    /// key. `partitions` is at least 1.
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: u32) -> u32;

    /// Called when the batch for `previous`, the partition last chosen for
    /// `topic`, is full and a new batch is about to start (Kafka's
    /// `Partitioner.onNewBatch`). A sticky partitioner moves on here; others
    /// ignore it.
    fn on_new_batch(&mut self, topic: &str, partitions: u32, previous: u32) {
        let _ = (topic, partitions, previous);
    }
}
// ANCHOR_END: trait

/// Kafka's default: keyed records by [`partition_for_key`], keyless records
/// to a sticky partition per topic that changes only when its batch is full.
#[derive(Debug)]
pub struct DefaultPartitioner {
    /// The current sticky partition of each topic.
    sticky: BTreeMap<String, u32>,
    rng: fastrand::Rng,
}

impl DefaultPartitioner {
    /// A partitioner whose sticky choices are random.
    pub fn new() -> DefaultPartitioner {
        DefaultPartitioner::with_rng(fastrand::Rng::new())
    }

    /// A partitioner whose sticky choices repeat for the same seed (tests).
    pub fn with_seed(seed: u64) -> DefaultPartitioner {
        DefaultPartitioner::with_rng(fastrand::Rng::with_seed(seed))
    }

    fn with_rng(rng: fastrand::Rng) -> DefaultPartitioner {
        DefaultPartitioner {
            sticky: BTreeMap::new(),
            rng,
        }
    }

    /// A random partition other than `avoid` (when there is another).
    fn pick(&mut self, partitions: u32, avoid: Option<u32>) -> u32 {
        match avoid {
            Some(avoid) if partitions > 1 => {
                // Pick among the others: shift past `avoid`.
                let p = self.rng.u32(0..partitions - 1);
                if p >= avoid { p + 1 } else { p }
            }
            _ => self.rng.u32(0..partitions),
        }
    }
}

impl Default for DefaultPartitioner {
    fn default() -> Self {
        DefaultPartitioner::new()
    }
}

// ANCHOR: sticky
impl Partitioner for DefaultPartitioner {
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: u32) -> u32 {
        // exercise-hole: partition | A key decides: `partition_for_key`. Without one, return the topic's sticky partition from `self.sticky`, choosing one with `self.pick(partitions, None)` the first time, and again if the topic now has fewer partitions than the stored choice.
        // exercise-hint: `self.sticky` maps a topic to its current sticky partition. A stored choice is only good while it is below `partitions` (a topic can be recreated with fewer).
        // exercise-hint: `if let Some(key) = key { return partition_for_key(key, partitions); }` then `match self.sticky.get(topic) { Some(&p) if p < partitions => p, _ => { let p = self.pick(partitions, None); self.sticky.insert(topic.to_string(), p); p } }`.
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        match self.sticky.get(topic) {
            Some(&p) if p < partitions => p,
            _ => {
                let p = self.pick(partitions, None);
                self.sticky.insert(topic.to_string(), p);
                p
            }
        }
        // exercise-end
    }

    fn on_new_batch(&mut self, topic: &str, partitions: u32, previous: u32) {
        // exercise-hole: on_new_batch | Only if the topic's sticky partition is still `previous` (a keyed record's batch filling up says nothing about the sticky one), switch it to `self.pick(partitions, Some(previous))`.
        // exercise-hint: KIP-480: the sticky partition moves on only when *its own* batch fills up; `previous` is the partition whose batch just closed.
        // exercise-hint: `if self.sticky.get(topic) == Some(&previous) { let next = self.pick(partitions, Some(previous)); self.sticky.insert(topic.to_string(), next); }`
        if self.sticky.get(topic) == Some(&previous) {
            let next = self.pick(partitions, Some(previous));
            self.sticky.insert(topic.to_string(), next);
        }
        // exercise-end
    }
}
// ANCHOR_END: sticky

/// Sends every record, keyed or not, to the next partition in turn (Kafka's
/// `RoundRobinPartitioner`). Spreads load evenly, but gives up per-key order.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: BTreeMap<String, u32>,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&mut self, topic: &str, _key: Option<&[u8]>, partitions: u32) -> u32 {
        let next = self.next.entry(topic.to_string()).or_insert(0);
        let p = *next % partitions;
        *next = next.wrapping_add(1);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `UtilsTest.testMurmur2` in Apache Kafka's client: the hash as a Java
    /// (signed) `int`.
    const KAFKA_VECTORS: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];

    /// Published by another project that checked them against the Java
    /// client (Akka's `Murmur2Spec`): one vector per tail length, 1 to 5 bytes.
    const AKKA_VECTORS: &[(&[u8], i32)] = &[
        (b"1", -1_993_445_489),
        (b"12", 126_087_238),
        (b"123", -267_702_483),
        (b"1234", -1_614_185_708),
        (b"12345", -1_188_365_604),
    ];

    #[test]
    fn murmur2_matches_the_java_client() {
        for &(key, java_int) in KAFKA_VECTORS.iter().chain(AKKA_VECTORS) {
            assert_eq!(
                murmur2(key) as i32,
                java_int,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn partition_clears_the_sign_bit_then_takes_the_remainder() {
        // "foobar" hashes to a negative int: -790332482 & 0x7fffffff is
        // 1357151166, which is 6 modulo 10 and 16 modulo 50.
        assert_eq!(partition_for_key(b"foobar", 10), 6);
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        // "abc" hashes to a positive int and is left as it is: 479470107 % 7.
        assert_eq!(partition_for_key(b"abc", 7), 479_470_107 % 7);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }

    #[test]
    fn keyed_records_ignore_stickiness() {
        let mut p = DefaultPartitioner::with_seed(1);
        for _ in 0..3 {
            assert_eq!(
                p.partition("t", Some(b"21"), 12),
                partition_for_key(b"21", 12)
            );
            p.on_new_batch("t", 12, 0);
        }
    }

    #[test]
    fn keyless_records_stick_until_a_new_batch() {
        let mut p = DefaultPartitioner::with_seed(7);
        let first = p.partition("t", None, 6);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 6), first);
        }
        p.on_new_batch("t", 6, first);
        let second = p.partition("t", None, 6);
        assert_ne!(second, first, "a new batch moves to another partition");
        // A batch filling up for some other partition (a keyed record's)
        // does not move the sticky one.
        p.on_new_batch("t", 6, (second + 1) % 6);
        assert_eq!(p.partition("t", None, 6), second);
    }

    #[test]
    fn topics_stick_independently() {
        let mut p = DefaultPartitioner::with_seed(3);
        let a = p.partition("a", None, 100);
        let b = p.partition("b", None, 100);
        p.on_new_batch("a", 100, a);
        assert_eq!(p.partition("b", None, 100), b);
    }

    #[test]
    fn a_sticky_choice_past_a_shrunk_count_is_replaced() {
        let mut p = DefaultPartitioner::with_seed(5);
        while p.partition("t", None, 8) < 4 {
            let previous = p.partition("t", None, 8);
            p.on_new_batch("t", 8, previous);
        }
        assert!(p.partition("t", None, 4) < 4);
    }

    #[test]
    fn one_partition_is_always_chosen() {
        let mut p = DefaultPartitioner::with_seed(9);
        assert_eq!(p.partition("t", None, 1), 0);
        p.on_new_batch("t", 1, 0);
        assert_eq!(p.partition("t", None, 1), 0);
    }

    #[test]
    fn round_robin_cycles() {
        let mut p = RoundRobinPartitioner::default();
        let seen: Vec<u32> = (0..7).map(|_| p.partition("t", Some(b"k"), 3)).collect();
        assert_eq!(seen, [0, 1, 2, 0, 1, 2, 0]);
    }
}

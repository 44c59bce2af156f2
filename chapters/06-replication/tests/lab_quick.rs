use ch06_replication::lab::{self, Scenario, Faults};
use ch06_replication::replica::{Flush, Truncation};
#[test]
fn quick() {
    let scenarios = [
        ("default", Scenario::default()),
        ("hw", Scenario { truncation: Truncation::HighWatermark, ..Scenario::default() }),
        ("power os", Scenario { faults: Faults::PowerLoss, ..Scenario::default() }),
        ("power flush", Scenario { faults: Faults::PowerLoss, flush: Flush::BeforeAck, ..Scenario::default() }),
        ("unclean", Scenario { unclean_leader_election: true, ..Scenario::default() }),
    ];
    for (name, s) in scenarios {
        let start = std::time::Instant::now();
        let mut fails = 0; let mut lost = 0; let mut acked = 0;
        let mut first = None;
        for seed in 0..100 {
            match lab::run(seed, &s) {
                Ok(r) => { lost += r.lost; acked += r.acknowledged; }
                Err(e) => { fails += 1; if first.is_none() { first = Some((seed, e)); } }
            }
        }
        eprintln!("{name}: fails {fails} lost {lost} acked {acked} first {first:?} in {:?}", start.elapsed());
    }
}

//! A cluster heals itself, in one thread: three coordinator servers and
//! three brokers. Brokers register and elect a controller; a topic is
//! created; a broker stops and its partitions move; the controller stops
//! and another takes over from the state in the coordinator; the old
//! controller wakes, believing it still leads, and nobody obeys it.
//!
//! Time is virtual (each round moves the clock about 60 ms; sessions end
//! after 500 ms of silence), so the output is the same on every run.
//!
//! ```text
//! cargo run -p ch08-cluster --example failover
//! ```

use ch03_partitions::TopicPartition;
use ch06_replication::protocol::BrokerId;
use ch08_cluster::controller::ClusterEvent;
use ch08_cluster::local::LocalBrokers;
use ch08_cluster::state::{PartitionRecord, partition_path};

const ROUNDS: usize = 100;

fn main() {
    let mut lab = LocalBrokers::new(&[1, 2, 3]);
    lab.run_until(ROUNDS, |lab| {
        lab.controller().is_some() && lab.brokers.values().all(|b| b.node.controller().is_some())
    });
    let controller = lab.controller().expect("elected");
    println!(
        "t={:>4} ms  brokers 1, 2, 3 registered; broker {controller} is the controller",
        lab.coordinator.now
    );
    print_events(&lab, controller);

    let error = lab.create_topic("orders", 3, 3);
    lab.run_until(ROUNDS, |lab| {
        lab.brokers.values().all(|b| b.told.len() == 3)
    });
    println!(
        "t={:>4} ms  create orders (3 partitions, 3 replicas): {error}",
        lab.coordinator.now
    );
    print_partitions(&mut lab);

    println!("\n-- broker 2 stops (as with SIGSTOP): its session ends after 500 ms --");
    lab.broker(2).paused = true;
    let stopped = lab.coordinator.now;
    until_led_by_others(&mut lab, 2);
    println!(
        "t={:>4} ms  controller {controller} fenced broker 2, {} ms after it stopped",
        lab.coordinator.now,
        lab.coordinator.now - stopped
    );
    print_partitions(&mut lab);

    println!("\n-- broker 1, the controller, stops too --");
    lab.broker(1).paused = true;
    let stopped = lab.coordinator.now;
    until_led_by_others(&mut lab, 1);
    let successor = lab.controller().expect("a new controller");
    println!(
        "t={:>4} ms  broker {successor} took over, {} ms after broker 1 stopped",
        lab.coordinator.now,
        lab.coordinator.now - stopped
    );
    print_events(&lab, successor);
    print_partitions(&mut lab);

    println!("\n-- broker 1 wakes: it heard nothing, and believes it leads in epoch 1 --");
    lab.broker(1).paused = false;
    let answer = lab.heartbeat(successor, 1);
    match answer {
        Ok(epoch) => println!("broker {successor} obeyed broker 1 (epoch {epoch}): a bug"),
        Err(e) => println!("broker {successor} refuses broker 1's answer: {e}"),
    }
    let seen = lab.brokers[&1].events.len();
    lab.run_until(ROUNDS, |lab| {
        lab.brokers[&1].node.controller().map(|c| c.broker_id) == Some(successor)
    });
    for event in &lab.brokers[&1].events[seen..] {
        match event {
            ClusterEvent::Members(_) | ClusterEvent::Answer { .. } => {}
            event => println!("  broker 1: {event:?}"),
        }
    }
}

/// What broker `id` reported about leading.
fn print_events(lab: &LocalBrokers, id: BrokerId) {
    for event in &lab.brokers[&id].events {
        if matches!(
            event,
            ClusterEvent::Elected { .. } | ClusterEvent::Loaded { .. }
        ) {
            println!("  broker {id}: {event:?}");
        }
    }
}

/// Runs until no partition stored in the coordinator is led by `gone`.
fn until_led_by_others(lab: &mut LocalBrokers, gone: BrokerId) {
    lab.run_until(ROUNDS, |lab| {
        (0..3).all(|p| stored(lab, p).is_some_and(|s| s.leader.is_some() && s.leader != Some(gone)))
    });
}

fn stored(
    lab: &LocalBrokers,
    partition: u32,
) -> Option<ch06_replication::protocol::PartitionState> {
    let path = partition_path(&TopicPartition::new("orders", partition));
    let (bytes, _) = lab.coordinator.servers[0]
        .state()
        .tree()
        .get_data(&path)
        .ok()?;
    PartitionRecord::decode(&path, bytes).ok().map(|r| r.state)
}

/// Every partition as the coordinator stores it.
fn print_partitions(lab: &mut LocalBrokers) {
    for partition in 0..3 {
        let path = partition_path(&TopicPartition::new("orders", partition));
        let tree = lab.coordinator.server(1).state().tree();
        let (bytes, _) = tree.get_data(&path).expect("stored");
        let record = PartitionRecord::decode(&path, bytes).expect("readable");
        let (s, controller_epoch) = (record.state, record.controller_epoch);
        let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
        println!(
            "  orders-{partition}  leader {leader}  leader epoch {}  replicas {:?}  isr {:?}  (written in controller epoch {controller_epoch})",
            s.leader_epoch, s.replicas, s.isr
        );
    }
}

//! The topic store as a user sees it: the topic lifecycle, restarts, and
//! what an interrupted change leaves behind.

use std::fs;
use std::path::Path;

use ch02_segments::Record;
use ch03_partitions::metadata::{self, FILE as METADATA_FILE};
use ch03_partitions::{StoreError, TopicConfig, TopicStore};

fn open(dir: &Path) -> TopicStore {
    TopicStore::open(dir).unwrap().0
}

/// The entries of the data directory, sorted, without the lock file.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

#[test]
fn create_lays_out_partitions_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let created = store
        .create_topic("orders", 3, TopicConfig::default())
        .unwrap();
    assert_eq!(created.warning, None);
    assert_eq!(store.topics(), ["orders"]);
    assert_eq!(
        listing(dir.path()),
        ["orders-0", "orders-1", "orders-2", METADATA_FILE]
    );
    let description = store.describe("orders").unwrap();
    assert_eq!(description.partitions.len(), 3);
    assert!(description.partitions.iter().all(|p| p.log_end_offset == 0));
}

#[test]
fn describe_shows_each_partitions_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.create_topic("t", 2, TopicConfig::default()).unwrap();
    store
        .append(
            "t",
            1,
            &[
                Record::new("a").with_timestamp(1),
                Record::new("b").with_timestamp(2),
            ],
        )
        .unwrap();
    let d = store.describe("t").unwrap();
    assert_eq!(
        (
            d.partitions[0].log_end_offset,
            d.partitions[1].log_end_offset
        ),
        (0, 2)
    );
    assert!(d.partitions[1].size_bytes > 0);
    assert_eq!(d.partitions[1].segments, 1);
}

#[test]
fn topics_partitions_data_and_configs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TopicConfig::default();
    config.set("retention.ms", "60000").unwrap();
    config.set("segment.bytes", "4096").unwrap();
    {
        let mut store = open(dir.path());
        store.create_topic("a", 2, config.clone()).unwrap();
        store.create_topic("b", 1, TopicConfig::default()).unwrap();
        store
            .append("a", 1, &[Record::new("kept").with_timestamp(5)])
            .unwrap();
        store.close().unwrap();
    }
    let (store, report) = TopicStore::open(dir.path()).unwrap();
    assert_eq!((report.topics, report.partitions), (2, 3));
    assert!(report.removed_dirs.is_empty() && report.recovered.is_empty());
    assert_eq!(store.topics(), ["a", "b"]);
    assert_eq!(store.describe("a").unwrap().config, config);
    let batches = store.read("a", 1, 0, 1024).unwrap();
    assert_eq!(batches[0].records().unwrap()[0].1.value, b"kept");
}

#[test]
fn a_crash_without_close_recovers_each_partition() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        store.create_topic("t", 2, TopicConfig::default()).unwrap();
        store
            .append("t", 0, &[Record::new("x").with_timestamp(1)])
            .unwrap();
        // dropped without close: no clean-shutdown markers
    }
    let (store, report) = TopicStore::open(dir.path()).unwrap();
    assert_eq!(report.recovered.len(), 2, "{report:?}");
    assert_eq!(store.describe("t").unwrap().partitions[0].log_end_offset, 1);
}

#[test]
fn delete_removes_the_topic_and_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store
        .create_topic("gone", 4, TopicConfig::default())
        .unwrap();
    store
        .create_topic("stays", 1, TopicConfig::default())
        .unwrap();
    store
        .append("gone", 0, &[Record::new("x").with_timestamp(1)])
        .unwrap();
    store.delete_topic("gone").unwrap();
    assert_eq!(store.topics(), ["stays"]);
    assert_eq!(listing(dir.path()), ["stays-0", METADATA_FILE]);
    assert!(matches!(
        store.delete_topic("gone"),
        Err(StoreError::UnknownTopic(t)) if t == "gone"
    ));
    // The name is free again, and the new topic starts empty.
    store
        .create_topic("gone", 1, TopicConfig::default())
        .unwrap();
    assert_eq!(
        store.describe("gone").unwrap().partitions[0].log_end_offset,
        0
    );
}

#[test]
fn add_partitions_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.create_topic("t", 2, TopicConfig::default()).unwrap();
    store
        .append("t", 0, &[Record::new("x").with_timestamp(1)])
        .unwrap();
    store.add_partitions("t", 5).unwrap();
    assert_eq!(store.partition_count("t").unwrap(), 5);
    store
        .append("t", 4, &[Record::new("y").with_timestamp(1)])
        .unwrap();
    assert_eq!(store.describe("t").unwrap().partitions[0].log_end_offset, 1);
    for bad in [5, 3, 0] {
        assert!(
            matches!(
                store.add_partitions("t", bad),
                Err(StoreError::InvalidPartitions(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        store.add_partitions("nope", 9),
        Err(StoreError::UnknownTopic(_))
    ));
    store.close().unwrap();
    assert_eq!(open(dir.path()).partition_count("t").unwrap(), 5);
}

#[test]
fn create_refuses_bad_requests_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store
        .create_topic("a_b", 1, TopicConfig::default())
        .unwrap();
    let default = TopicConfig::default;
    assert!(matches!(
        store.create_topic("a_b", 1, default()),
        Err(StoreError::TopicExists(t)) if t == "a_b"
    ));
    assert!(matches!(
        store.create_topic("a.b", 1, default()),
        Err(StoreError::Collision { name, existing }) if name == "a.b" && existing == "a_b"
    ));
    assert!(matches!(
        store.create_topic("bad name", 1, default()),
        Err(StoreError::InvalidName(_))
    ));
    for partitions in [0, 10_001] {
        assert!(matches!(
            store.create_topic("n", partitions, default()),
            Err(StoreError::InvalidPartitions(_))
        ));
    }
    let mut compact = TopicConfig::default();
    compact.set("cleanup.policy", "compact").unwrap();
    assert!(matches!(
        store.create_topic("c", 1, compact),
        Err(StoreError::InvalidConfig(_))
    ));
    // Nothing was left behind by the refusals.
    assert_eq!(store.topics(), ["a_b"]);
    assert_eq!(listing(dir.path()), ["a_b-0", METADATA_FILE]);
}

#[test]
fn names_with_dots_or_underscores_get_kafkas_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let created = store
        .create_topic("clicks.v2", 1, TopicConfig::default())
        .unwrap();
    assert!(created.warning.unwrap().contains("collide"));
}

#[test]
fn unknown_topics_and_partitions_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.create_topic("t", 2, TopicConfig::default()).unwrap();
    assert!(matches!(
        store.append("t", 2, &[Record::new("x")]),
        Err(StoreError::UnknownPartition {
            partition: 2,
            count: 2,
            ..
        })
    ));
    assert!(matches!(
        store.read("u", 0, 0, 1),
        Err(StoreError::UnknownTopic(_))
    ));
    assert!(matches!(
        store.describe("u"),
        Err(StoreError::UnknownTopic(_))
    ));
}

#[test]
fn a_second_store_on_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    assert!(matches!(
        TopicStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn a_half_created_topic_is_rolled_back_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        store
            .create_topic("kept", 1, TopicConfig::default())
            .unwrap();
        store.close().unwrap();
    }
    // What a crash between "make the directories" and "commit the
    // metadata" leaves: directories nobody lists, one of them with a log.
    fs::create_dir(dir.path().join("half-0")).unwrap();
    fs::create_dir(dir.path().join("half-1")).unwrap();
    fs::write(dir.path().join("half-0/00000000000000000000.log"), b"").unwrap();
    // And the leftover of a metadata write that never got renamed.
    fs::write(dir.path().join(metadata::TMP_FILE), b"junk").unwrap();

    let (store, report) = TopicStore::open(dir.path()).unwrap();
    assert_eq!(report.removed_dirs, ["half-0", "half-1"]);
    assert_eq!(store.topics(), ["kept"]);
    assert_eq!(listing(dir.path()), ["kept-0", METADATA_FILE]);
}

#[test]
fn half_added_partitions_are_rolled_back_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        store.create_topic("t", 2, TopicConfig::default()).unwrap();
        store.close().unwrap();
    }
    fs::create_dir(dir.path().join("t-2")).unwrap();
    let (store, report) = TopicStore::open(dir.path()).unwrap();
    assert_eq!(report.removed_dirs, ["t-2"]);
    assert_eq!(store.partition_count("t").unwrap(), 2);
}

#[test]
fn a_half_deleted_topic_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        store
            .create_topic("gone", 2, TopicConfig::default())
            .unwrap();
        store.append("gone", 1, &[Record::new("x")]).unwrap();
        store.close().unwrap();
    }
    let kept = fs::read(dir.path().join("gone-1/00000000000000000000.log")).unwrap();
    // What a crash right after the delete's commit point leaves: the
    // metadata without the topic, the directories still there.
    {
        let mut store = open(dir.path());
        store.delete_topic("gone").unwrap();
    }
    fs::create_dir(dir.path().join("gone-1")).unwrap();
    fs::write(dir.path().join("gone-1/00000000000000000000.log"), kept).unwrap();

    let (store, report) = TopicStore::open(dir.path()).unwrap();
    assert_eq!(report.removed_dirs, ["gone-1"]);
    assert!(store.topics().is_empty());
    assert_eq!(listing(dir.path()), [METADATA_FILE]);
}

#[test]
fn a_missing_partition_directory_is_recreated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        store.create_topic("t", 2, TopicConfig::default()).unwrap();
        store.close().unwrap();
    }
    fs::remove_dir_all(dir.path().join("t-1")).unwrap();
    let (store, report) = TopicStore::open(dir.path()).unwrap();
    assert_eq!(report.recreated, ["t-1"]);
    assert_eq!(store.describe("t").unwrap().partitions.len(), 2);
}

#[test]
fn other_files_in_the_data_directory_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    fs::create_dir(dir.path().join("backup-01")).unwrap(); // not canonical
    fs::create_dir(dir.path().join("bad name-0")).unwrap(); // not a topic name
    let (_store, report) = TopicStore::open(dir.path()).unwrap();
    assert!(report.removed_dirs.is_empty());
    assert_eq!(
        listing(dir.path()),
        ["backup-01", "bad name-0", "notes.txt", METADATA_FILE]
    );
}

#[test]
fn a_directory_that_is_not_a_store_is_refused_not_emptied() {
    let dir = tempfile::tempdir().unwrap();
    // Someone's files, one of which looks like a partition directory.
    fs::create_dir(dir.path().join("photos-2024")).unwrap();
    let error = TopicStore::open(dir.path()).err().unwrap();
    assert!(matches!(error, StoreError::Metadata { .. }), "{error}");
    assert!(dir.path().join("photos-2024").exists());
}

#[test]
fn damaged_metadata_is_refused_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        store.create_topic("t", 1, TopicConfig::default()).unwrap();
        store.close().unwrap();
    }
    let path = dir.path().join(METADATA_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let error = TopicStore::open(dir.path()).err().unwrap();
    assert!(error.to_string().contains("checksum"), "{error}");
    assert!(dir.path().join("t-0").exists());
}

#[test]
fn retention_runs_over_every_partition() {
    use ch02_segments::ManualClock;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (mut store, _) = TopicStore::open_with_clock(dir.path(), clock.clone()).unwrap();
    let mut config = TopicConfig::default();
    config.set("retention.ms", "1000").unwrap();
    config.set("segment.bytes", "100").unwrap();
    store.create_topic("t", 2, config).unwrap();
    for partition in 0..2 {
        for i in 0..3 {
            let record = Record::new(vec![0; 80]).with_timestamp(1_000_000 + i);
            store.append("t", partition, &[record]).unwrap();
        }
    }
    clock.advance(10_000);
    // Each partition keeps its active segment.
    assert_eq!(store.apply_retention().unwrap(), 4);
    let d = store.describe("t").unwrap();
    assert!(d.partitions.iter().all(|p| p.log_start_offset == 2));
}

/// `topics.meta` is replaced (a new file renamed over the old name), never
/// rewritten in place: a crash in the middle of an in-place write would
/// leave a torn file, and every topic with it. A hard link to the old file
/// tells the two apart: a rename leaves the linked file as it was, an
/// in-place write changes it.
#[test]
fn metadata_is_replaced_never_rewritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store
        .create_topic("orders", 1, TopicConfig::default())
        .unwrap();
    let old = dir.path().join("old.meta");
    fs::hard_link(dir.path().join(METADATA_FILE), &old).unwrap();
    let before = fs::read(&old).unwrap();
    store
        .create_topic("payments", 2, TopicConfig::default())
        .unwrap();
    assert_eq!(
        fs::read(&old).unwrap(),
        before,
        "topics.meta was rewritten in place"
    );
    assert_ne!(fs::read(dir.path().join(METADATA_FILE)).unwrap(), before);
    assert!(!dir.path().join(metadata::TMP_FILE).exists());
}

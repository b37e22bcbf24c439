//! The device's record of what it has seen ([`SeenStore`]) and a
//! [`PointerCache`] backed by it: what one process saw binds the next.

use std::sync::Arc;

use peergos_pointers::{Error, PointerCache, SeenStore};
use peergos_testkit::pointers::{target, Key};
use proptest::prelude::*;

#[test]
fn a_later_process_refuses_what_an_earlier_one_saw_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seen.sqlite");
    let alice = Key::random();
    let a = &alice.hash;
    let v1 = alice.update(a, None, Some(target(1)), 1);
    let v2 = alice.update(a, Some(target(1)), Some(target(2)), 2);
    {
        let first = PointerCache::persistent(Arc::new(SeenStore::open(&path).unwrap()), "server");
        first.observe(a, a, &v1).unwrap();
        first.observe(a, a, &v2).unwrap();
    }
    // A new process: a new store on the same file.
    let second = PointerCache::persistent(Arc::new(SeenStore::open(&path).unwrap()), "server");
    assert_eq!(second.newest(a, a), Some(2));
    let err = second.observe(a, a, &v1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                seen: 2,
                offered: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rollback"), "{err}");
    // An equivocating update at the recorded sequence is refused too.
    let fork = alice.update(a, Some(target(1)), Some(target(9)), 2);
    assert!(matches!(
        second.observe(a, a, &fork),
        Err(Error::Equivocation { sequence: 2 })
    ));
    // Another server's scope is a separate record.
    let other = PointerCache::persistent(Arc::new(SeenStore::open(&path).unwrap()), "other");
    other.observe(a, a, &v1).unwrap();
    // "No pointer" after one was seen is a rollback as well.
    let before = second.newest(a, a);
    assert!(matches!(
        second.observe_read(a, a, None, before),
        Err(Error::Rollback {
            seen: 2,
            offered: 0
        })
    ));
}

#[test]
fn a_slower_process_never_moves_the_record_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seen.sqlite");
    let alice = Key::random();
    let a = &alice.hash;
    let v1 = alice.update(a, None, Some(target(1)), 1);
    let v2 = alice.update(a, Some(target(1)), Some(target(2)), 2);
    let v3 = alice.update(a, Some(target(2)), Some(target(3)), 3);
    let fast = PointerCache::persistent(Arc::new(SeenStore::open(&path).unwrap()), "s");
    let slow = PointerCache::persistent(Arc::new(SeenStore::open(&path).unwrap()), "s");
    slow.observe(a, a, &v1).unwrap();
    fast.observe(a, a, &v3).unwrap();
    // The slow one has only v1 in memory and records v2: the file keeps v3.
    slow.observe(a, a, &v2).unwrap();
    let store = SeenStore::open(&path).unwrap();
    assert_eq!(store.pointer("s", a, a).unwrap().unwrap(), v3);
}

#[test]
fn a_damaged_record_reads_as_none_and_forget_clears_a_scope() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seen.sqlite");
    let alice = Key::random();
    let mallory = Key::random();
    let a = &alice.hash;
    let store = SeenStore::open(&path).unwrap();
    // A record that does not verify for (a, a): signed by someone else.
    let forged = mallory.update(a, None, Some(target(1)), 7);
    store.record_pointer("s", a, a, &forged).unwrap();
    assert!(store.pointer("s", a, a).unwrap().is_none());
    store.record_counter("s", "login/alice", 3, b"").unwrap();
    store.record_counter("t", "login/alice", 5, b"").unwrap();
    assert_eq!(store.forget(Some("s")).unwrap(), 2);
    assert!(store.counter("s", "login/alice").unwrap().is_none());
    assert_eq!(store.counter("t", "login/alice").unwrap().unwrap().0, 5);
}

#[test]
fn an_unwritable_record_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let err = SeenStore::open(blocker.join("sub").join("seen.sqlite")).unwrap_err();
    assert!(err.to_string().contains("record of seen versions"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever order versions are recorded in, by however many writers,
    /// the record holds the largest.
    #[test]
    fn the_record_holds_the_largest_version(versions in proptest::collection::vec(0u64..1000, 1..40)) {
        let store = SeenStore::in_memory().unwrap();
        for (i, v) in versions.iter().enumerate() {
            store.record_counter("s", "c", *v, &i.to_le_bytes()).unwrap();
        }
        let max = *versions.iter().max().unwrap();
        let (recorded, value) = store.counter("s", "c").unwrap().unwrap();
        prop_assert_eq!(recorded, max);
        let first = versions.iter().position(|v| *v == max).unwrap();
        prop_assert_eq!(value, first.to_le_bytes().to_vec());
    }
}

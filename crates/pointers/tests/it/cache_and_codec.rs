//! Rollback protection, and property tests of the update codec and the CAS
//! rule against a model.

use std::sync::Arc;

use peergos_ipld::cbor;
use peergos_pointers::{
    CasConflict, Error, MemoryPointerStore, OwnerOnly, PointerCache, PointerStore, PointerUpdate,
    SignedPointer,
};
use peergos_testkit::pointers::{target, Key};
use proptest::prelude::*;

#[test]
fn cache_refuses_rollback_and_equivocation() {
    let alice = Key::random();
    let a = &alice.hash;
    let cache = PointerCache::new();
    let v1 = alice.update(a, None, Some(target(1)), 1);
    let v2 = alice.update(a, Some(target(1)), Some(target(2)), 2);
    cache.observe(a, a, &v1).unwrap();
    cache.observe(a, a, &v2).unwrap();
    cache.observe(a, a, &v2).unwrap(); // the same again is fine
    assert_eq!(cache.newest(a, a), Some(2));
    let err = cache.observe(a, a, &v1).unwrap_err();
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
    let fork = alice.update(a, Some(target(1)), Some(target(9)), 2);
    assert!(matches!(
        cache.observe(a, a, &fork),
        Err(Error::Equivocation { sequence: 2 })
    ));
    // Unverifiable updates are refused before they can poison the cache.
    let mallory = Key::random();
    let forged = mallory.update(a, Some(target(2)), Some(target(3)), 3);
    assert!(matches!(cache.observe(a, a, &forged), Err(Error::Key(_))));
    assert_eq!(cache.newest(a, a), Some(2));
}

#[test]
fn reads_are_judged_against_what_was_seen_before_them() {
    let alice = Key::random();
    let a = &alice.hash;
    let cache = PointerCache::new();
    let v1 = alice.update(a, None, Some(target(1)), 1);
    let v2 = alice.update(a, Some(target(1)), Some(target(2)), 2);
    // A read issued before v2 was seen, answered with v1 after another task
    // recorded v2: stale but honest, and the cache keeps v2.
    let before = cache.newest(a, a);
    cache.observe(a, a, &v1).unwrap();
    let floor = cache.newest(a, a);
    cache.observe(a, a, &v2).unwrap();
    cache.observe_read(a, a, Some(&v1), floor).unwrap();
    assert_eq!(cache.newest(a, a), Some(2));
    assert_eq!(before, None);
    // A read issued after v2 was seen, answered with v1: a rollback.
    let err = cache
        .observe_read(a, a, Some(&v1), cache.newest(a, a))
        .unwrap_err();
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
    // The pointer vanishing after it was seen is a rollback too.
    let err = cache.observe_read(a, a, None, Some(2)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                seen: 2,
                offered: 0
            }
        ),
        "{err}"
    );
    cache.observe_read(a, a, None, None).unwrap();
    // A newer read is recorded; a forged one is refused.
    let v3 = alice.update(a, Some(target(2)), Some(target(3)), 3);
    cache.observe_read(a, a, Some(&v3), Some(2)).unwrap();
    assert_eq!(cache.newest(a, a), Some(3));
    let forged = Key::random().update(a, Some(target(3)), Some(target(4)), 4);
    assert!(cache.observe_read(a, a, Some(&forged), Some(3)).is_err());
}

#[test]
fn error_messages_name_both_values() {
    let err = Error::CasConflict(Box::new(CasConflict {
        expected: None,
        actual: Some(target(1)),
    }));
    let text = err.to_string();
    assert!(
        text.contains("nothing") && text.contains(&target(1).to_string()),
        "{text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn signed_updates_round_trip(previous in any::<Option<u64>>(), current in any::<Option<u64>>(), sequence in any::<u64>()) {
        let alice = Key::random();
        let update = PointerUpdate { previous: previous.map(target), current: current.map(target), sequence };
        let signed = SignedPointer::sign(&alice.pair, &alice.hash, update).unwrap();
        let bytes = signed.to_bytes().unwrap();
        let back = SignedPointer::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(cbor::to_vec(&back).unwrap(), bytes);
        back.verify(&alice.hash, &alice.hash).unwrap();
    }

    /// Random updates against a store and a two-field model: the store
    /// accepts exactly the updates the model says are valid.
    #[test]
    fn store_follows_the_cas_model(steps in proptest::collection::vec((0u64..4, 0u64..4, 0u64..6), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let alice = Key::random();
        let a = alice.hash;
        let store = MemoryPointerStore::new(Arc::new(OwnerOnly));
        let (mut model_current, mut model_sequence) = (None, 0u64);
        for (previous, current, sequence) in steps {
            let previous = (previous > 0).then(|| target(previous));
            let current = (current > 0).then(|| target(current));
            let update = alice.update(&a, previous, current, sequence);
            let valid = previous == model_current && sequence > model_sequence;
            let result = runtime.block_on(store.set(&a, &a, update));
            prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
            if valid {
                model_current = current;
                model_sequence = sequence;
            }
        }
        let stored = runtime.block_on(store.get(&a, &a)).unwrap();
        prop_assert_eq!(stored.map(|s| (s.update.current, s.update.sequence)).unwrap_or((None, 0)), (model_current, model_sequence));
    }
}

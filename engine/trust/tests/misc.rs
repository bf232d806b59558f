//! OriginCache bounds, constant-time secrets, and fuzz-target smoke runs.

use std::cell::Cell;

use net_trust::{ct_contains, fuzzing, GroupId, OriginCache, SubnetId};
use subtle::{Choice, ConstantTimeEq};

#[test]
fn origin_cache_never_exceeds_capacity() {
    let mut cache: OriginCache<u64> = OriginCache::default();
    assert_eq!(cache.capacity(), 4096);
    // A peer spraying a million distinct origins.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..1_000_000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        cache.insert(x ^ i, i);
        assert!(cache.len() <= cache.capacity());
    }
    assert_eq!(cache.len(), 4096);
    // The most recent keys are present, hits work, and a miss recomputes.
    assert_eq!(cache.get(x ^ 999_999), Some(&999_999));
    assert_eq!(*cache.get_or_insert_with(7, || 70), 70);
    assert_eq!(cache.get(7), Some(&70));
    assert_eq!(cache.len(), 4096);
}

#[test]
fn origin_cache_lru_and_zero_capacity() {
    let mut c = OriginCache::new(2);
    c.insert(1, "a");
    c.insert(2, "b");
    assert_eq!(c.get(1), Some(&"a")); // 1 is now most recent
    c.insert(3, "c"); // evicts 2
    assert_eq!(c.get(2), None);
    assert_eq!(c.get(1), Some(&"a"));
    assert_eq!(c.len(), 2);
    let mut z = OriginCache::new(0);
    z.insert(1, ());
    z.insert(2, ());
    assert_eq!((z.len(), z.capacity()), (1, 1));
}

#[test]
fn group_and_subnet_ids_compare_in_constant_time() {
    let g1 = GroupId([1; 32]);
    let g1b = GroupId([1; 32]);
    let mut last = [1u8; 32];
    last[31] = 2;
    let g2 = GroupId(last);
    assert!(bool::from(g1.ct_eq(&g1b)));
    assert!(!bool::from(g1.ct_eq(&g2)));
    assert!(!bool::from(g1.ct_eq(&GroupId([0; 32]))));
    let s1 = SubnetId([5; 16]);
    assert!(bool::from(s1.ct_eq(&SubnetId([5; 16]))));
    assert!(!bool::from(s1.ct_eq(&SubnetId([6; 16]))));
    // Debug never shows the secret.
    assert_eq!(format!("{g1:?}"), "GroupId(<redacted>)");
    assert_eq!(format!("{s1:?}"), "SubnetId(<redacted>)");
}

#[test]
fn ct_contains_finds_members_anywhere() {
    let list: Vec<GroupId> = (0..8u8).map(|i| GroupId([i; 32])).collect();
    for i in 0..8u8 {
        assert!(ct_contains(&list, &GroupId([i; 32])), "{i}");
    }
    assert!(!ct_contains(&list, &GroupId([9; 32])));
    assert!(!ct_contains(&[], &GroupId([0; 32])));
    let subnets = [SubnetId([1; 16]), SubnetId([2; 16])];
    assert!(ct_contains(&subnets, &SubnetId([2; 16])));
    assert!(!ct_contains(&subnets, &SubnetId([3; 16])));
}

/// Counts comparisons, to show `ct_contains` has no early exit.
struct Counted<'a>(u8, &'a Cell<u32>);

impl ConstantTimeEq for Counted<'_> {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.1.set(self.1.get() + 1);
        self.0.ct_eq(&other.0)
    }
}

#[test]
fn ct_contains_compares_every_entry() {
    let calls = Cell::new(0);
    let list: Vec<Counted<'_>> = (0..10).map(|i| Counted(i, &calls)).collect();
    assert!(
        ct_contains(&list, &Counted(0, &calls)),
        "match at the front"
    );
    assert_eq!(calls.get(), 10);
    calls.set(0);
    assert!(!ct_contains(&list, &Counted(77, &calls)));
    assert_eq!(calls.get(), 10);
}

#[test]
fn fuzz_targets_accept_edge_inputs() {
    let inputs: [&[u8]; 6] = [
        &[],
        &[0],
        &[0xff; 64],
        &[0x80; 9000],
        &[1; 17_000],
        b"net/announce/v1\0",
    ];
    for d in inputs {
        fuzzing::announcement(d);
        fuzzing::token(d);
        fuzzing::reservation(d);
        fuzzing::capability_fold(d);
    }
}

//! AV-2: the reservation arithmetic, by property. A budget shared by several processes through
//! leases is never passed, books never go negative, and a settle gives back exactly the
//! difference between what was reserved and what was spent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use portcullis_core::money::{Allowance, Price, Usage, grantable, lease_slice};
use proptest::prelude::*;

proptest! {
    #[test]
    fn av_2_a_grant_never_passes_the_cap(
        cap in 0i64..1_000_000,
        spent in 0i64..1_000_000,
        leased in 0i64..1_000_000,
        needed in 0i64..100_000,
        wanted in 0i64..200_000,
    ) {
        match grantable(cap, spent, leased, needed, wanted) {
            Some(granted) => {
                prop_assert!(granted >= needed);
                prop_assert!(granted >= 0);
                prop_assert!(spent + leased + granted <= cap);
            }
            None => prop_assert!(needed > cap - spent - leased),
        }
    }

    #[test]
    fn av_2_a_settle_gives_back_exactly_the_difference(
        granted in 0i64..1_000_000,
        reserved in 0i64..1_000_000,
        spend_fraction in 0u8..=100,
    ) {
        let mut allowance = Allowance::default();
        allowance.grant(granted);
        if allowance.reserve(reserved) {
            let actual = reserved * i64::from(spend_fraction) / 100;
            let before = allowance.remaining;
            allowance.settle(reserved, actual);
            prop_assert_eq!(allowance.remaining, before + reserved - actual);
            prop_assert_eq!(allowance.in_flight, 0);
            prop_assert_eq!(allowance.remaining, granted - actual);
        } else {
            prop_assert!(reserved > granted);
            prop_assert_eq!(allowance, Allowance { remaining: granted, in_flight: 0 });
        }
    }

    /// Processes lease from one cap and reserve, settle and over-run in any order: what they
    /// spend within their reservations never passes the cap, and no book goes negative.
    #[test]
    fn av_2_processes_sharing_a_cap_never_overspend(
        cap in 1i64..10_000,
        steps in proptest::collection::vec((0usize..3, 1i64..500, 0u8..=100, any::<bool>()), 1..200),
    ) {
        let mut spent = 0i64;
        let mut leases = [0i64; 3];
        let mut books = [Allowance::default(); 3];
        let mut open: Vec<(usize, i64)> = Vec::new();
        for (process, estimate, fraction, settle_one) in steps {
            if settle_one && !open.is_empty() {
                let (p, reserved) = open.remove(0);
                let actual = reserved * i64::from(fraction) / 100;
                books[p].settle(reserved, actual);
                spent += actual;
                leases[p] -= actual;
            } else {
                let shortfall = (estimate - books[process].remaining).max(0);
                if shortfall > 0 {
                    let leased: i64 = leases.iter().sum();
                    if let Some(granted) =
                        grantable(cap, spent, leased, shortfall, lease_slice(cap, shortfall))
                    {
                        books[process].grant(granted);
                        leases[process] += granted;
                    }
                }
                if books[process].reserve(estimate) {
                    open.push((process, estimate));
                }
            }
            let leased: i64 = leases.iter().sum();
            prop_assert!(spent + leased <= cap, "spent {} + leased {} > cap {}", spent, leased, cap);
            for book in &books {
                prop_assert!(book.remaining >= 0 && book.in_flight >= 0);
            }
        }
        prop_assert!(spent <= cap);
    }

    #[test]
    fn av_2_a_cost_is_never_negative_and_grows_with_usage(
        input in 0i64..10_000_000,
        output in 0i64..10_000_000,
        more in 0i64..1_000,
        price_in in 0i64..100_000_000,
        price_out in 0i64..100_000_000,
    ) {
        let price = Price { input: price_in, output: price_out, ..Price::default() };
        let usage = Usage::totals(input, output);
        let bigger = Usage::totals(input + more, output + more);
        prop_assert!(price.cost(&usage) >= 0);
        prop_assert!(price.cost(&bigger) >= price.cost(&usage));
    }

    /// Whatever kinds of token a provider reports within the totals it was reserved for, the
    /// cost never exceeds the reservation at the ceiling price (AV-2).
    #[test]
    fn av_2_no_mix_of_token_kinds_costs_more_than_the_ceiling(
        input in 0i64..1_000_000,
        output in 0i64..1_000_000,
        split in proptest::collection::vec(0i64..2_000_000, 6),
        // Small prices too: rounding each kind up on its own would pass the ceiling there.
        prices in proptest::collection::vec(prop_oneof![0i64..10, 0i64..100_000_000], 8),
        audio in any::<(bool, bool)>(),
    ) {
        let price = Price {
            input: prices[0],
            output: prices[1],
            cached_input: Some(prices[2]),
            cache_write_input: Some(prices[3]),
            cache_write_long_input: Some(prices[7]),
            reasoning: Some(prices[4]),
            audio_input: audio.0.then_some(prices[5]),
            audio_output: audio.1.then_some(prices[6]),
        };
        let usage = Usage {
            input_tokens: input,
            cached_input_tokens: split[0],
            cache_write_tokens: split[1],
            cache_write_long_tokens: split[5],
            audio_input_tokens: if audio.0 { split[2] } else { 0 },
            output_tokens: output,
            reasoning_tokens: split[3],
            audio_output_tokens: if audio.1 { split[4] } else { 0 },
        };
        let reserved = price.ceiling(audio.0, audio.1).cost(&Usage::totals(input, output));
        prop_assert!(price.cost(&usage) <= reserved);
    }
}

#[test]
fn av_2_an_over_run_takes_what_is_left_and_no_more() {
    let mut allowance = Allowance::default();
    allowance.grant(100);
    assert!(allowance.reserve(60));
    allowance.settle(60, 150);
    assert_eq!(
        allowance,
        Allowance {
            remaining: 0,
            in_flight: 0
        }
    );
    assert!(!allowance.reserve(1));
}

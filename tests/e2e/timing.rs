//! AC-4 against the real binary: a login for a known email answers in the same time as one
//! for an unknown email, so the timing does not tell which emails have accounts. The test runs
//! alone (`.config/nextest.toml`), since the other tests' load would be its noise.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, command, setup};

/// Welch's t statistic of two samples.
fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let var =
        |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (va, vb) = (var(a, ma), var(b, mb));
    (ma - mb) / (va / a.len() as f64 + vb / b.len() as f64).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac_4_timing_of_a_failed_login_does_not_tell_whether_the_email_has_an_account() {
    let setup = setup().await;
    let mut command = command(&setup.test);
    // No throttling in the way: every attempt does the full work.
    for setting in [
        "PORTCULLIS_AUTH__FAILURES_PER_ACCOUNT_AND_ADDRESS",
        "PORTCULLIS_AUTH__FAILURES_PER_ACCOUNT",
        "PORTCULLIS_AUTH__FAILURES_PER_ADDRESS",
    ] {
        command.env(setting, "1000000");
    }
    let server = Server::start(command);
    let client = reqwest::Client::builder().build().unwrap();
    let attempt = |email: String| {
        let client = client.clone();
        let url = server.url("/auth/v1/login");
        async move {
            let started = Instant::now();
            let response = client
                .post(url)
                .json(&json!({"email": email, "password": "not the passphrase"}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            response.bytes().await.unwrap();
            assert_eq!(status, 401);
            started.elapsed().as_secs_f64() * 1000.0
        }
    };
    let known = || "owner@e2e.example".to_owned();
    let unknown = || format!("{}@e2e.example", uuid::Uuid::now_v7().simple());
    for _ in 0..10 {
        attempt(known()).await;
        attempt(unknown()).await;
    }
    let (mut known_ms, mut unknown_ms) = (Vec::new(), Vec::new());
    for n in 0..240 {
        // Alternating, and in both orders, so that drift and the previous attempt's
        // after-work fall on both sides alike.
        let pair = if n % 2 == 0 {
            (attempt(known()).await, attempt(unknown()).await)
        } else {
            let u = attempt(unknown()).await;
            (attempt(known()).await, u)
        };
        known_ms.push(pair.0);
        unknown_ms.push(pair.1);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = welch_t(&known_ms, &unknown_ms);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    eprintln!(
        "known {:.2} ms, unknown {:.2} ms, Welch t = {t:.2}",
        mean(&known_ms),
        mean(&unknown_ms)
    );
    assert!(
        t.abs() < 4.5,
        "a known email answers differently: t = {t:.2} (known {:.2} ms, unknown {:.2} ms)",
        mean(&known_ms),
        mean(&unknown_ms)
    );
}

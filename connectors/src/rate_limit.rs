//! Client-side rate limiting per account and API: requests are spaced evenly at the configured
//! per-minute rate (a token bucket of depth one, i.e. GCRA), so a bulk push runs at the quota
//! without provoking 429 storms. Every HTTP attempt, retries included, takes a slot, because
//! each one counts against Google's quota. Concurrent callers are served in arrival order.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces requests `60 s / rate` apart.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `per_minute` requests per minute; `None` for 0 (no limiter).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        if per_minute == 0 {
            return None;
        }
        Some(RateLimiter {
            interval: Duration::from_secs(60) / per_minute,
            next_free: Mutex::new(None),
        })
    }

    /// The spacing between two requests.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this request's slot; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        let slot = {
            let mut next = self.next_free.lock().await;
            let slot = match *next {
                Some(t) if t > start => t,
                _ => start,
            };
            *next = Some(slot + self.interval);
            slot
        };
        if slot > start {
            tokio::time::sleep_until(slot).await;
        }
        slot - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn zero_means_unlimited() {
        assert!(RateLimiter::per_minute(0).is_none());
        assert_eq!(
            RateLimiter::per_minute(600).unwrap().interval(),
            Duration::from_millis(100)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_sequential_requests() {
        let rl = RateLimiter::per_minute(60).unwrap();
        let t0 = Instant::now();
        assert_eq!(rl.acquire().await, Duration::ZERO);
        rl.acquire().await;
        rl.acquire().await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_does_not_accumulate_a_burst() {
        let rl = RateLimiter::per_minute(60).unwrap();
        rl.acquire().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let t0 = Instant::now();
        rl.acquire().await;
        rl.acquire().await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_burst_never_exceeds_rate_in_any_minute() {
        let rl = Arc::new(RateLimiter::per_minute(120).unwrap());
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..300 {
            let rl = rl.clone();
            tasks.push(tokio::spawn(async move {
                rl.acquire().await;
                Instant::now() - t0
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        // Any 60 s window holds at most 120 requests.
        for (i, start) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|t| **t < *start + Duration::from_secs(60))
                .count();
            assert!(in_window <= 120, "{in_window} requests in one minute");
        }
        assert_eq!(*times.last().unwrap(), Duration::from_millis(299 * 500));
    }
}

//! RFC 5545 recurrence expansion for Calendar `singleEvents=true` and `events.instances`:
//! RRULE (FREQ DAILY/WEEKLY/MONTHLY/YEARLY, INTERVAL, COUNT, UNTIL, BYDAY with ordinals,
//! BYMONTHDAY, BYMONTH, BYSETPOS, WKST), EXDATE and RDATE. Timed series are expanded in the
//! event's `start.timeZone` with chrono-tz, so a 09:00 New York meeting stays at 09:00 local
//! time across DST changes (times that fall into a DST gap move forward by the gap).

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

/// Safety cap on the number of recurrence periods examined.
const MAX_PERIODS: u32 = 200_000;

/// The first instance of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesStart {
    /// All-day series.
    Date(NaiveDate),
    /// Timed series, with the local start time in `tz`.
    DateTime { local: NaiveDateTime, tz: Tz },
}

/// One occurrence: its instant (midnight UTC for all-day) and its date/local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occurrence {
    pub utc: DateTime<Utc>,
    pub local: NaiveDateTime,
    pub all_day: bool,
}

/// A recurrence line Google would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid recurrence rule: {0}")]
pub struct RecurrenceError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freq {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

#[derive(Debug, Clone)]
struct Rule {
    freq: Freq,
    interval: u32,
    count: Option<u32>,
    until: Option<Until>,
    byday: Vec<(Option<i32>, Weekday)>,
    bymonthday: Vec<i32>,
    bymonth: Vec<u32>,
    bysetpos: Vec<i32>,
    wkst: Weekday,
}

fn err(s: impl Into<String>) -> RecurrenceError {
    RecurrenceError(s.into())
}

fn weekday(s: &str) -> Result<Weekday, RecurrenceError> {
    Ok(match s {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return Err(err(format!("bad weekday {s:?}"))),
    })
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

fn parse_local(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").ok()
}

/// Local wall-clock time in `tz` to an instant; DST gaps move forward, overlaps take the first.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        LocalResult::None => {
            // In a DST gap: use the offset in force just before the gap (RFC 5545 3.3.5),
            // which moves the time forward by the gap's length.
            let before = tz
                .from_local_datetime(&(local - Duration::hours(4)))
                .earliest()
                .map(|t| t.offset().fix().local_minus_utc())
                .unwrap_or(0);
            Utc.from_utc_datetime(&(local - Duration::seconds(before as i64)))
        }
    }
}

fn parse_rrule(body: &str) -> Result<Rule, RecurrenceError> {
    let mut rule = Rule {
        freq: Freq::Daily,
        interval: 1,
        count: None,
        until: None,
        byday: Vec::new(),
        bymonthday: Vec::new(),
        bymonth: Vec::new(),
        bysetpos: Vec::new(),
        wkst: Weekday::Mon,
    };
    let mut freq = None;
    for part in body.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| err(format!("bad rule part {part:?}")))?;
        match k.to_ascii_uppercase().as_str() {
            "FREQ" => {
                freq = Some(match v.to_ascii_uppercase().as_str() {
                    "DAILY" => Freq::Daily,
                    "WEEKLY" => Freq::Weekly,
                    "MONTHLY" => Freq::Monthly,
                    "YEARLY" => Freq::Yearly,
                    other => return Err(err(format!("unsupported FREQ {other}"))),
                })
            }
            "INTERVAL" => {
                rule.interval = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| err("bad INTERVAL"))?
            }
            "COUNT" => {
                rule.count = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| err("bad COUNT"))?,
                )
            }
            "UNTIL" => {
                rule.until = Some(if let Some(d) = parse_date(v) {
                    Until::Date(d)
                } else if let Some(t) = v.strip_suffix('Z').and_then(parse_local) {
                    Until::Instant(Utc.from_utc_datetime(&t))
                } else if let Some(t) = parse_local(v) {
                    Until::Instant(Utc.from_utc_datetime(&t))
                } else {
                    return Err(err("bad UNTIL"));
                })
            }
            "BYDAY" => {
                for d in v.split(',') {
                    let d = d.trim().to_ascii_uppercase();
                    if d.len() < 2 {
                        return Err(err("bad BYDAY"));
                    }
                    let (ord, wd) = d.split_at(d.len() - 2);
                    let ord = if ord.is_empty() {
                        None
                    } else {
                        let n: i32 = ord
                            .trim_start_matches('+')
                            .parse()
                            .map_err(|_| err("bad BYDAY ordinal"))?;
                        if n == 0 || n.abs() > 53 {
                            return Err(err("bad BYDAY ordinal"));
                        }
                        Some(n)
                    };
                    rule.byday.push((ord, weekday(wd)?));
                }
            }
            "BYMONTHDAY" => {
                for d in v.split(',') {
                    let n: i32 = d.parse().map_err(|_| err("bad BYMONTHDAY"))?;
                    if n == 0 || n.abs() > 31 {
                        return Err(err("bad BYMONTHDAY"));
                    }
                    rule.bymonthday.push(n);
                }
            }
            "BYMONTH" => {
                for d in v.split(',') {
                    let n: u32 = d.parse().map_err(|_| err("bad BYMONTH"))?;
                    if !(1..=12).contains(&n) {
                        return Err(err("bad BYMONTH"));
                    }
                    rule.bymonth.push(n);
                }
            }
            "BYSETPOS" => {
                for d in v.split(',') {
                    let n: i32 = d.parse().map_err(|_| err("bad BYSETPOS"))?;
                    if n == 0 || n.abs() > 366 {
                        return Err(err("bad BYSETPOS"));
                    }
                    rule.bysetpos.push(n);
                }
            }
            "WKST" => rule.wkst = weekday(&v.to_ascii_uppercase())?,
            other => return Err(err(format!("unsupported rule part {other}"))),
        }
    }
    rule.freq = freq.ok_or_else(|| err("FREQ is required"))?;
    if rule.count.is_some() && rule.until.is_some() {
        return Err(err("COUNT and UNTIL are exclusive"));
    }
    Ok(rule)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

/// Dates of `wd` in the span [first, last], optionally only the ord-th (negative from the end).
fn weekdays_in(first: NaiveDate, last: NaiveDate, wd: Weekday, ord: Option<i32>) -> Vec<NaiveDate> {
    let mut all = Vec::new();
    let mut d = first;
    let offset =
        (7 + wd.num_days_from_monday() as i64 - d.weekday().num_days_from_monday() as i64) % 7;
    d += Duration::days(offset);
    while d <= last {
        all.push(d);
        d += Duration::days(7);
    }
    match ord {
        None => all,
        Some(n) if n > 0 => all.get(n as usize - 1).copied().into_iter().collect(),
        Some(n) => {
            let idx = all.len() as i64 + n as i64;
            if idx >= 0 {
                all.get(idx as usize).copied().into_iter().collect()
            } else {
                Vec::new()
            }
        }
    }
}

fn month_candidates(rule: &Rule, y: i32, m: u32, start: NaiveDate) -> Vec<NaiveDate> {
    let dim = days_in_month(y, m);
    let Some(first) = NaiveDate::from_ymd_opt(y, m, 1) else {
        return Vec::new();
    };
    let Some(last) = NaiveDate::from_ymd_opt(y, m, dim) else {
        return Vec::new();
    };
    let by_md: Vec<NaiveDate> = rule
        .bymonthday
        .iter()
        .filter_map(|&n| {
            let day = if n > 0 { n } else { dim as i32 + 1 + n };
            if day >= 1 && day <= dim as i32 {
                NaiveDate::from_ymd_opt(y, m, day as u32)
            } else {
                None
            }
        })
        .collect();
    let by_d: Vec<NaiveDate> = rule
        .byday
        .iter()
        .flat_map(|&(ord, wd)| weekdays_in(first, last, wd, ord))
        .collect();
    let mut out = match (rule.bymonthday.is_empty(), rule.byday.is_empty()) {
        (false, false) => by_md.into_iter().filter(|d| by_d.contains(d)).collect(),
        (false, true) => by_md,
        (true, false) => by_d,
        (true, true) => NaiveDate::from_ymd_opt(y, m, start.day())
            .into_iter()
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn period_candidates(rule: &Rule, start: NaiveDate, k: u32) -> Vec<NaiveDate> {
    let step = k as i64 * rule.interval as i64;
    let month_ok = |d: &NaiveDate| rule.bymonth.is_empty() || rule.bymonth.contains(&d.month());
    let mut out: Vec<NaiveDate> = match rule.freq {
        Freq::Daily => {
            let d = start + Duration::days(step);
            let md_ok = rule.bymonthday.is_empty() || {
                let dim = days_in_month(d.year(), d.month()) as i32;
                rule.bymonthday
                    .iter()
                    .any(|&n| (if n > 0 { n } else { dim + 1 + n }) == d.day() as i32)
            };
            let wd_ok = rule.byday.is_empty() || rule.byday.iter().any(|(_, w)| *w == d.weekday());
            if md_ok && wd_ok && month_ok(&d) {
                vec![d]
            } else {
                vec![]
            }
        }
        Freq::Weekly => {
            let back = (7 + start.weekday().num_days_from_monday() as i64
                - rule.wkst.num_days_from_monday() as i64)
                % 7;
            let week_start = start - Duration::days(back) + Duration::days(7 * step);
            let days: Vec<Weekday> = if rule.byday.is_empty() {
                vec![start.weekday()]
            } else {
                rule.byday.iter().map(|(_, w)| *w).collect()
            };
            days.iter()
                .map(|w| {
                    let off = (7 + w.num_days_from_monday() as i64
                        - rule.wkst.num_days_from_monday() as i64)
                        % 7;
                    week_start + Duration::days(off)
                })
                .filter(|d| month_ok(d))
                .collect()
        }
        Freq::Monthly => {
            let months = start.year() as i64 * 12 + start.month0() as i64 + step;
            let (y, m) = (
                months.div_euclid(12) as i32,
                months.rem_euclid(12) as u32 + 1,
            );
            if rule.bymonth.is_empty() || rule.bymonth.contains(&m) {
                month_candidates(rule, y, m, start)
            } else {
                vec![]
            }
        }
        Freq::Yearly => {
            let y = start.year() + step as i32;
            if rule.bymonth.is_empty() && !rule.byday.is_empty() && rule.bymonthday.is_empty() {
                match (
                    NaiveDate::from_ymd_opt(y, 1, 1),
                    NaiveDate::from_ymd_opt(y, 12, 31),
                ) {
                    (Some(f), Some(l)) => rule
                        .byday
                        .iter()
                        .flat_map(|&(ord, wd)| weekdays_in(f, l, wd, ord))
                        .collect(),
                    _ => vec![],
                }
            } else {
                let months: Vec<u32> = if rule.bymonth.is_empty() {
                    vec![start.month()]
                } else {
                    rule.bymonth.clone()
                };
                months
                    .into_iter()
                    .flat_map(|m| month_candidates(rule, y, m, start))
                    .collect()
            }
        }
    };
    out.sort();
    out.dedup();
    if !rule.bysetpos.is_empty() {
        let n = out.len() as i32;
        let picked: Vec<NaiveDate> = rule
            .bysetpos
            .iter()
            .filter_map(|&p| {
                let idx = if p > 0 { p - 1 } else { n + p };
                (idx >= 0 && idx < n).then(|| out[idx as usize])
            })
            .collect();
        out = picked;
        out.sort();
        out.dedup();
    }
    out
}

/// Values of an EXDATE/RDATE line as occurrences (dates are matched by local date).
/// An EXDATE/RDATE value: a date (all-day match) or an instant.
type DateValue = (Option<NaiveDate>, Option<DateTime<Utc>>);

fn date_list(line: &str, start: &SeriesStart) -> Result<Vec<DateValue>, RecurrenceError> {
    let (head, values) = line.split_once(':').ok_or_else(|| err("missing ':'"))?;
    let mut tz: Option<Tz> = match start {
        SeriesStart::DateTime { tz, .. } => Some(*tz),
        SeriesStart::Date(_) => None,
    };
    let mut is_date = false;
    for p in head.split(';').skip(1) {
        if let Some(t) = p.strip_prefix("TZID=") {
            tz = Some(t.parse().map_err(|_| err(format!("unknown TZID {t}")))?);
        } else if p.eq_ignore_ascii_case("VALUE=DATE") {
            is_date = true;
        }
    }
    let mut out = Vec::new();
    for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        if is_date || v.len() == 8 {
            out.push((
                Some(parse_date(v).ok_or_else(|| err(format!("bad date {v}")))?),
                None,
            ));
        } else if let Some(u) = v.strip_suffix('Z') {
            let t = parse_local(u).ok_or_else(|| err(format!("bad date-time {v}")))?;
            out.push((None, Some(Utc.from_utc_datetime(&t))));
        } else {
            let t = parse_local(v).ok_or_else(|| err(format!("bad date-time {v}")))?;
            let utc = match tz {
                Some(tz) => resolve_local(tz, t),
                None => Utc.from_utc_datetime(&t),
            };
            out.push((None, Some(utc)));
        }
    }
    Ok(out)
}

/// Checks recurrence lines without expanding them.
pub fn validate(lines: &[String], start: &SeriesStart) -> Result<(), RecurrenceError> {
    for line in lines {
        let upper = line.to_ascii_uppercase();
        if let Some(body) = upper.strip_prefix("RRULE:") {
            parse_rrule(body)?;
        } else if upper.starts_with("EXDATE") || upper.starts_with("RDATE") {
            date_list(line, start)?;
        } else {
            return Err(err(format!("unsupported recurrence line {line:?}")));
        }
    }
    Ok(())
}

impl SeriesStart {
    fn date(&self) -> NaiveDate {
        match self {
            SeriesStart::Date(d) => *d,
            SeriesStart::DateTime { local, .. } => local.date(),
        }
    }

    fn occurrence(&self, date: NaiveDate) -> Occurrence {
        match self {
            SeriesStart::Date(_) => {
                let local = date.and_time(NaiveTime::MIN);
                Occurrence {
                    utc: Utc.from_utc_datetime(&local),
                    local,
                    all_day: true,
                }
            }
            SeriesStart::DateTime { local, tz } => {
                let l = date.and_time(local.time());
                Occurrence {
                    utc: resolve_local(*tz, l),
                    local: l,
                    all_day: false,
                }
            }
        }
    }

    fn occurrence_at(&self, t: DateTime<Utc>) -> Occurrence {
        match self {
            SeriesStart::Date(_) => Occurrence {
                utc: t,
                local: t.naive_utc(),
                all_day: true,
            },
            SeriesStart::DateTime { tz, .. } => Occurrence {
                utc: t,
                local: t.with_timezone(tz).naive_local(),
                all_day: false,
            },
        }
    }
}

/// Expands a series: every occurrence starting at or after `from` and at or before
/// `limit`, at most `max`, in order. Occurrences before `from` still count towards `COUNT`.
pub fn expand(
    start: &SeriesStart,
    lines: &[String],
    from: Option<DateTime<Utc>>,
    limit: DateTime<Utc>,
    max: usize,
) -> Result<Vec<Occurrence>, RecurrenceError> {
    let before = |o: &Occurrence| from.is_some_and(|f| o.utc < f);
    let mut rules = Vec::new();
    let mut exdates = Vec::new();
    let mut rdates = Vec::new();
    for line in lines {
        let upper = line.to_ascii_uppercase();
        if let Some(body) = upper.strip_prefix("RRULE:") {
            rules.push(parse_rrule(body)?);
        } else if upper.starts_with("EXDATE") {
            exdates.extend(date_list(line, start)?);
        } else if upper.starts_with("RDATE") {
            rdates.extend(date_list(line, start)?);
        } else {
            return Err(err(format!("unsupported recurrence line {line:?}")));
        }
    }
    let first = start.occurrence(start.date());
    let mut occ: Vec<Occurrence> = if before(&first) {
        Vec::new()
    } else {
        vec![first]
    };
    for rule in &rules {
        let mut emitted: u32 = 1; // DTSTART counts as the first occurrence
        'periods: for k in 0..MAX_PERIODS {
            let cands = period_candidates(rule, start.date(), k);
            let mut beyond = false;
            for d in cands {
                if d <= start.date() {
                    continue;
                }
                let o = start.occurrence(d);
                if let Some(c) = rule.count {
                    if emitted >= c {
                        break 'periods;
                    }
                }
                match rule.until {
                    Some(Until::Date(u)) if d > u => break 'periods,
                    Some(Until::Instant(u)) if o.utc > u && !(o.all_day && d <= u.date_naive()) => {
                        break 'periods
                    }
                    _ => {}
                }
                if o.utc > limit {
                    beyond = true;
                    break;
                }
                emitted += 1;
                if before(&o) {
                    continue;
                }
                occ.push(o);
                if occ.len() > max.saturating_mul(2) + 16 {
                    break 'periods;
                }
            }
            if beyond {
                break;
            }
        }
    }
    for (d, t) in rdates {
        let o = match (d, t) {
            (Some(d), _) => start.occurrence(d),
            (None, Some(t)) => start.occurrence_at(t),
            _ => continue,
        };
        if o.utc <= limit && !before(&o) {
            occ.push(o);
        }
    }
    occ.sort();
    occ.dedup_by(|a, b| a.utc == b.utc);
    occ.retain(|o| {
        !exdates.iter().any(|(d, t)| match (d, t) {
            (Some(d), _) => o.local.date() == *d,
            (None, Some(t)) => o.utc == *t,
            _ => false,
        })
    });
    occ.retain(|o| o.utc <= limit);
    occ.truncate(max);
    Ok(occ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny(s: &str) -> SeriesStart {
        SeriesStart::DateTime {
            local: NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap(),
            tz: chrono_tz::America::New_York,
        }
    }

    fn ex(
        s: &SeriesStart,
        l: &[String],
        limit: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<Occurrence>, RecurrenceError> {
        expand(s, l, None, limit, max)
    }

    fn far() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn weekly_keeps_local_time_across_dst() {
        let occ = ex(
            &ny("2026-03-02T09:00:00"),
            &["RRULE:FREQ=WEEKLY;COUNT=3".into()],
            far(),
            100,
        )
        .unwrap();
        let hours: Vec<_> = occ
            .iter()
            .map(|o| o.utc.format("%Y-%m-%dT%H:%M").to_string())
            .collect();
        assert_eq!(
            hours,
            ["2026-03-02T14:00", "2026-03-09T13:00", "2026-03-16T13:00"]
        );
        assert!(occ
            .iter()
            .all(|o| o.local.time() == NaiveTime::from_hms_opt(9, 0, 0).unwrap()));
    }

    #[test]
    fn byday_interval_until_exdate() {
        let lines = vec![
            "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;UNTIL=20260131T235959Z".to_string(),
            "EXDATE;TZID=America/New_York:20260114T090000".to_string(),
        ];
        let occ = ex(&ny("2026-01-05T09:00:00"), &lines, far(), 100).unwrap();
        let days: Vec<_> = occ.iter().map(|o| o.local.date().to_string()).collect();
        assert_eq!(
            days,
            ["2026-01-05", "2026-01-07", "2026-01-19", "2026-01-21"]
        );
    }

    #[test]
    fn monthly_and_yearly() {
        let occ = ex(
            &ny("2026-01-31T10:00:00"),
            &["RRULE:FREQ=MONTHLY;COUNT=3".into()],
            far(),
            100,
        )
        .unwrap();
        let days: Vec<_> = occ.iter().map(|o| o.local.date().to_string()).collect();
        assert_eq!(days, ["2026-01-31", "2026-03-31", "2026-05-31"]);
        let occ = ex(
            &ny("2026-01-13T10:00:00"),
            &["RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=3".into()],
            far(),
            100,
        )
        .unwrap();
        let days: Vec<_> = occ.iter().map(|o| o.local.date().to_string()).collect();
        assert_eq!(days, ["2026-01-13", "2026-01-30", "2026-02-27"]);
        let start = SeriesStart::Date(NaiveDate::from_ymd_opt(2026, 5, 4).unwrap());
        let occ = ex(&start, &["RRULE:FREQ=YEARLY;COUNT=3".into()], far(), 100).unwrap();
        assert_eq!(occ.len(), 3);
        assert!(occ[2].all_day);
        let occ = ex(
            &start,
            &["RRULE:FREQ=DAILY;INTERVAL=3".into()],
            Utc.with_ymd_and_hms(2026, 5, 11, 0, 0, 0).unwrap(),
            100,
        )
        .unwrap();
        assert_eq!(occ.len(), 3);
    }

    #[test]
    fn gap_moves_forward() {
        let t = resolve_local(
            chrono_tz::America::New_York,
            NaiveDateTime::parse_from_str("2026-03-08T02:30:00", "%Y-%m-%dT%H:%M:%S").unwrap(),
        );
        assert_eq!(t.format("%H:%M").to_string(), "07:30");
    }

    #[test]
    fn rejects_bad_rules() {
        assert!(ex(
            &ny("2026-01-05T09:00:00"),
            &["RRULE:FREQ=HOURLY".into()],
            far(),
            10
        )
        .is_err());
        assert!(validate(&["FOO:bar".into()], &ny("2026-01-05T09:00:00")).is_err());
    }
}

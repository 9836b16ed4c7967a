//! A strict parser of the OpenMetrics text `/metrics` serves, so a test can say the text
//! is valid and read its samples. It checks more than a scraper would (family order,
//! metadata for every family, histogram consistency), so a test fails on text that a
//! lenient scraper would take without a word.

use std::collections::{BTreeMap, BTreeSet};

/// One metric family's metadata.
#[derive(Debug, Clone)]
pub struct Family {
    pub kind: String,
    pub help: String,
}

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub family: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Every sample of `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The sum of the samples of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

/// The sample-name suffixes each OpenMetrics type allows.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" | "stateset" => &[""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[],
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A number as OpenMetrics writes it: a decimal float, `+Inf`, `-Inf` or `NaN`.
fn parse_number(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let plain = !text.is_empty()
        && text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !plain {
        return Err(format!("{text:?} is not a number"));
    }
    text.parse::<f64>()
        .map_err(|e| format!("{text:?} is not a number: {e}"))
}

/// `{name="value",...}` at the start of `text`; the labels and the rest of the text.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return Ok((labels, text));
    };
    if let Some(after) = rest.strip_prefix('}') {
        return Err(format!("empty label braces before {after:?}"));
    }
    loop {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("a label without =\" in {text:?}"))?;
        if !is_label_name(name) {
            return Err(format!("{name:?} is not a valid label name"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let Some((i, c)) = chars.next() else {
                return Err(format!("an unterminated label value in {text:?}"));
            };
            match c {
                '"' => break i,
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("a bad escape {other:?} in {text:?}")),
                },
                '\n' => return Err("a raw newline in a label value".into()),
                c => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name:?} twice in {text:?}"));
        }
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            if rest.starts_with('}') {
                return Err(format!("a trailing comma in {text:?}"));
            }
        } else if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        } else {
            return Err(format!("expected , or }} in {text:?}"));
        }
    }
}

/// Parses OpenMetrics text strictly: every line is `# HELP`, `# TYPE`, `# UNIT` or a
/// sample `name{labels} value [timestamp]`; every sample belongs, by its suffix, to the
/// family declared last, which has both `# TYPE` and `# HELP`; a family's lines are
/// together; no sample repeats; counters are not negative; histogram buckets are
/// cumulative and end at `+Inf` equal to `_count`; the text ends with `# EOF`.
pub fn parse_openmetrics(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the text does not end with # EOF")?;
    let mut out = Exposition::default();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen: BTreeSet<(String, BTreeMap<String, String>)> = BTreeSet::new();

    for (number, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.is_empty() {
            return Err(at("an empty line".into()));
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default().to_owned();
            let rest = parts.next().unwrap_or_default().to_owned();
            if !is_metric_name(&name) {
                return Err(at(format!("{name:?} is not a metric name")));
            }
            // A new family starts; the previous one may not come back.
            if current.as_deref() != Some(name.as_str()) {
                if finished.contains(&name) {
                    return Err(at(format!("family {name} is split")));
                }
                if let Some(previous) = current.replace(name.clone()) {
                    finished.insert(previous);
                }
            }
            match keyword {
                "TYPE" => {
                    if suffixes(&rest).is_empty() {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    if types.insert(name.clone(), rest).is_some() {
                        return Err(at("a second # TYPE".into()));
                    }
                }
                "HELP" => {
                    if helps.insert(name.clone(), rest).is_some() {
                        return Err(at("a second # HELP".into()));
                    }
                }
                "UNIT" => {}
                other => return Err(at(format!("unknown comment {other:?}"))),
            }
            if out.samples.iter().any(|s| s.family == name) {
                return Err(at("metadata after the family's samples".into()));
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("a comment that is not # HELP, # TYPE or # UNIT".into()));
        }

        // A sample of the current family.
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("{name:?} is not a metric name")));
        }
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(at)?;
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_number(fields.next().unwrap_or_default()).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            parse_number(timestamp).map_err(at)?;
        }
        if fields.next().is_some() {
            return Err(at("extra fields after the value".into()));
        }
        let family = current
            .clone()
            .ok_or_else(|| at("a sample before any # TYPE".into()))?;
        let kind = types
            .get(&family)
            .ok_or_else(|| at(format!("family {family} has no # TYPE")))?;
        if !helps.contains_key(&family) {
            return Err(at(format!("family {family} has no # HELP")));
        }
        let suffix = name
            .strip_prefix(family.as_str())
            .ok_or_else(|| at(format!("the sample is not of family {family}")))?;
        if !suffixes(kind).contains(&suffix) {
            return Err(at(format!("suffix {suffix:?} is not allowed for a {kind}")));
        }
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("a counter below zero".into()));
        }
        if suffix == "_bucket" && !labels.contains_key("le") {
            return Err(at("a bucket without le".into()));
        }
        if !seen.insert((name.to_owned(), labels.clone())) {
            return Err(at("a repeated sample".into()));
        }
        out.samples.push(Sample {
            name: name.to_owned(),
            family,
            labels,
            value,
        });
    }
    for (family, kind) in &types {
        if !helps.contains_key(family) {
            return Err(format!("family {family} has # TYPE but no # HELP"));
        }
        out.families.insert(
            family.clone(),
            Family {
                kind: kind.clone(),
                help: helps[family].clone(),
            },
        );
    }
    check_histograms(&out)?;
    Ok(out)
}

/// Buckets are cumulative, end with `+Inf`, and `+Inf` equals `_count`.
fn check_histograms(exposition: &Exposition) -> Result<(), String> {
    for (family, meta) in &exposition.families {
        if meta.kind != "histogram" {
            continue;
        }
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in exposition.series(&format!("{family}_bucket")) {
            let mut rest = sample.labels.clone();
            let le = parse_number(&rest.remove("le").unwrap_or_default())?;
            groups.entry(rest).or_default().push((le, sample.value));
        }
        for (labels, mut buckets) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{labels:?}: buckets are not cumulative"));
            }
            let last = buckets.last().copied().unwrap_or((0.0, 0.0));
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let count = exposition
                .series(&format!("{family}_count"))
                .into_iter()
                .find(|s| s.labels == labels)
                .map(|s| s.value);
            if count != Some(last.1) {
                return Err(format!(
                    "{family}{labels:?}: +Inf bucket {} but _count {count:?}",
                    last.1
                ));
            }
        }
    }
    Ok(())
}

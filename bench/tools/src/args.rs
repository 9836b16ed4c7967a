//! `--flag value` pairs, typed on demand. Small on purpose: these are script-facing tools.

use std::collections::HashMap;
use std::str::FromStr;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub struct Flags(HashMap<String, String>);

impl Flags {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut map = HashMap::new();
        while let Some(flag) = argv.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("expected a --flag, got {flag:?}"));
            };
            let value = argv.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value);
        }
        Ok(Flags(map))
    }

    pub fn text(&self, name: &str) -> Result<&str, Error> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required").into())
    }

    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, Error> {
        match self.0.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name}: {text:?} is not a number").into()),
        }
    }
}

//! A flat JSON object, written by hand to keep the bench free of dependencies.

pub struct Json {
    fields: Vec<String>,
}

impl Json {
    pub fn new() -> Json {
        Json { fields: Vec::new() }
    }

    /// A number; NaN and infinities become `null` (JSON has neither).
    pub fn num(mut self, key: &str, value: f64) -> Json {
        let value = if value.is_finite() {
            format!("{value:.6}")
        } else {
            String::from("null")
        };
        self.fields.push(format!("\"{key}\": {value}"));
        self
    }

    pub fn text(mut self, key: &str, value: &str) -> Json {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        self.fields.push(format!("\"{key}\": \"{escaped}\""));
        self
    }

    pub fn list(mut self, key: &str, values: &[u64]) -> Json {
        let items: Vec<String> = values.iter().map(u64::to_string).collect();
        self.fields
            .push(format!("\"{key}\": [{}]", items.join(", ")));
        self
    }

    pub fn finish(self) -> String {
        format!("{{{}}}", self.fields.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_numbers_text_and_lists_in_order() {
        let json = Json::new()
            .num("p99_ms", 1.5)
            .num("max_ms", f64::NAN)
            .text("error", "said \"no\"")
            .list("deliveries_per_second", &[3, 0]);
        assert_eq!(
            json.finish(),
            r#"{"p99_ms": 1.500000, "max_ms": null, "error": "said \"no\"", "deliveries_per_second": [3, 0]}"#
        );
    }
}

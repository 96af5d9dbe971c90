//! Reading a JSON predict body straight into rows: each value becomes a
//! cell as it is read, with no `serde_json::Value` tree in between (a
//! single MNIST row is 784 of them, and building and dropping that tree
//! was most of the parse). Every structural problem is named by its row
//! and column, or its field.

use std::{cell::RefCell, fmt};

use mass_protocol::serving::{Cell, Row};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::serving::rows::MAX_ROWS;

/// At most this many cells are reserved ahead for a row.
const MAX_WIDTH_HINT: usize = 1 << 16;

/// Reads a predict body: its rows and whether missing values are allowed.
pub fn parse_predict(body: &[u8]) -> Result<(Vec<Row>, bool), String> {
    let refusal = RefCell::new(None);
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed = Body { refusal: &refusal }.deserialize(&mut json).and_then(|read| json.end().map(|()| read));
    parsed.map_err(|e| refusal.into_inner().unwrap_or_else(|| format!("invalid JSON body: {e}")))
}

/// Where the first refusal's sentence is kept: serde's errors carry a
/// position suffix and a type's wording, ours name the row and column.
type Refusal<'a> = &'a RefCell<Option<String>>;

fn refuse<T, E: de::Error>(refusal: Refusal<'_>, sentence: String) -> Result<T, E> {
    refusal.borrow_mut().get_or_insert(sentence);
    Err(E::custom("refused"))
}

/// Visitor methods for the JSON values a place does not take, each
/// refused with `$sentence` given the value as it reads in JSON.
macro_rules! refuse_others {
    ($($method:ident($($arg:ident: $ty:ty)?) => $shown:expr;)*) => {
        $(fn $method<E: de::Error>(self, $($arg: $ty)?) -> Result<Self::Value, E> {
            let shown: String = $shown;
            refuse(self.refusal, (self.sentence)(shown))
        })*
    };
}

macro_rules! refuse_scalars {
    () => {
        refuse_others! {
            visit_bool(v: bool) => v.to_string();
            visit_i64(v: i64) => v.to_string();
            visit_u64(v: u64) => v.to_string();
            visit_f64(v: f64) => v.to_string();
            visit_str(v: &str) => format!("{v:?}");
            visit_unit() => "null".into();
        }
    };
}

struct Body<'a> {
    refusal: Refusal<'a>,
}

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = (Vec<Row>, bool);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(BodyVisitor { refusal: self.refusal, sentence: body_sentence })
    }
}

fn body_sentence(_: String) -> String {
    "body: expected an object like {\"rows\": [[...], ...]}".into()
}

struct BodyVisitor<'a> {
    refusal: Refusal<'a>,
    sentence: fn(String) -> String,
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = (Vec<Row>, bool);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object like {\"rows\": [[...], ...]}")
    }

    refuse_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        refuse(self.refusal, body_sentence(String::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut rows, mut allow_missing) = (None, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "rows" => rows = Some(map.next_value_seed(RowsSeed { refusal: self.refusal })?),
                "allow_missing" => allow_missing = map.next_value_seed(AllowSeed { refusal: self.refusal })?,
                other => {
                    return refuse(
                        self.refusal,
                        format!("body: unknown field '{other}' (fields: rows, allow_missing)"),
                    );
                }
            }
        }
        match rows {
            Some(rows) => Ok((rows, allow_missing)),
            None => refuse(self.refusal, "rows: missing, or not an array of rows".into()),
        }
    }
}

struct AllowSeed<'a> {
    refusal: Refusal<'a>,
}

impl<'de> DeserializeSeed<'de> for AllowSeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(AllowVisitor { refusal: self.refusal, sentence: allow_sentence })
    }
}

fn allow_sentence(shown: String) -> String {
    format!("allow_missing: expected true or false, got {shown}")
}

struct AllowVisitor<'a> {
    refusal: Refusal<'a>,
    sentence: fn(String) -> String,
}

impl<'de> Visitor<'de> for AllowVisitor<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    refuse_others! {
        visit_i64(v: i64) => v.to_string();
        visit_u64(v: u64) => v.to_string();
        visit_f64(v: f64) => v.to_string();
        visit_str(v: &str) => format!("{v:?}");
        visit_unit() => "null".into();
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        refuse(self.refusal, allow_sentence("an array".into()))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        refuse(self.refusal, allow_sentence("an object".into()))
    }
}

struct RowsSeed<'a> {
    refusal: Refusal<'a>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Vec<Row>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Row>, D::Error> {
        deserializer.deserialize_any(RowsVisitor { refusal: self.refusal, sentence: rows_sentence })
    }
}

fn rows_sentence(_: String) -> String {
    "rows: missing, or not an array of rows".into()
}

struct RowsVisitor<'a> {
    refusal: Refusal<'a>,
    sentence: fn(String) -> String,
}

impl<'de> Visitor<'de> for RowsVisitor<'_> {
    type Value = Vec<Row>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }

    refuse_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<Row>, A::Error> {
        refuse(self.refusal, rows_sentence(String::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Row>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_ROWS));
        while rows.len() < MAX_ROWS {
            // Rows of one body are usually as wide as the one before.
            let hint = match rows.last() {
                Some(Row::Values(values)) => values.len(),
                _ => 0,
            };
            match seq.next_element_seed(RowSeed { refusal: self.refusal, row: rows.len(), hint })? {
                Some(row) => rows.push(row),
                None => return Ok(rows),
            }
        }
        // Past the bound: count the rest without keeping them, to say how many.
        let mut count = rows.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        if count > MAX_ROWS {
            return refuse(self.refusal, format!("rows: {count} rows in one request; at most {MAX_ROWS}"));
        }
        Ok(rows)
    }
}

struct RowSeed<'a> {
    refusal: Refusal<'a>,
    row: usize,
    /// Values expected in the row, to size it.
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Row, D::Error> {
        deserializer.deserialize_any(RowVisitor { refusal: self.refusal, row: self.row, hint: self.hint })
    }
}

struct RowVisitor<'a> {
    refusal: Refusal<'a>,
    row: usize,
    hint: usize,
}

impl RowVisitor<'_> {
    fn refuse_row<T, E: de::Error>(&self, shown: String) -> Result<T, E> {
        let r = self.row;
        refuse(self.refusal, format!("rows[{r}]: expected an array of values or an object of columns, got {shown}"))
    }
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of values or an object of columns")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Row, E> {
        self.refuse_row(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Row, E> {
        self.refuse_row(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Row, E> {
        self.refuse_row(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Row, E> {
        self.refuse_row(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Row, E> {
        self.refuse_row(format!("{v:?}"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Row, E> {
        self.refuse_row("null".into())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(self.hint).min(MAX_WIDTH_HINT));
        let r = self.row;
        loop {
            let c = values.len();
            let place = move || format!("rows[{r}][{c}]");
            match seq.next_element_seed(CellSeed { refusal: self.refusal, place: &place })? {
                Some(cell) => values.push(cell),
                None => return Ok(Row::Values(values)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut pairs = Vec::new();
        let r = self.row;
        while let Some(name) = map.next_key::<String>()? {
            let cell =
                map.next_value_seed(CellSeed { refusal: self.refusal, place: &|| format!("rows[{r}].{name}") })?;
            pairs.push((name, cell));
        }
        Ok(Row::Named(pairs))
    }
}

struct CellSeed<'a, 'p> {
    refusal: Refusal<'a>,
    /// Names the cell in a refusal (`rows[r][c]` or `rows[r].name`).
    place: &'p dyn Fn() -> String,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_, '_> {
    type Value = Cell;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_, '_> {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, text, true, false or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Missing)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
        Ok(Cell::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
        Ok(Cell::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
        Ok(Cell::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
        Ok(Cell::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
        self.visit_string(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cell, E> {
        // NaN and infinities cannot be JSON numbers; their usual spellings
        // are read as such so the column check can name them.
        Ok(match v.as_str() {
            "NaN" | "nan" => Cell::Number(f64::NAN),
            "Infinity" | "-Infinity" | "inf" | "-inf" => Cell::Number(f64::INFINITY),
            _ => Cell::Text(v),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Cell, A::Error> {
        refuse(self.refusal, format!("{}: nested values are not allowed, got an array", (self.place)()))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Cell, A::Error> {
        refuse(self.refusal, format!("{}: nested values are not allowed, got an object", (self.place)()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predict_bodies_are_read_or_refused_by_name() {
        let (rows, allow) = parse_predict(br#"{"rows": [[1, "a", null], {"x": true}]}"#).unwrap();
        assert!(!allow);
        assert_eq!(rows[0], Row::Values(vec![Cell::Number(1.0), Cell::Text("a".into()), Cell::Missing]));
        assert_eq!(rows[1], Row::Named(vec![("x".into(), Cell::Bool(true))]));
        let (rows, allow) = parse_predict(br#"{"allow_missing": true, "rows": [[-2.5, "NaN", "inf"]]}"#).unwrap();
        assert!(allow);
        let Row::Values(cells) = &rows[0] else { panic!("an array row") };
        assert_eq!(cells[0], Cell::Number(-2.5));
        assert!(matches!(cells[1], Cell::Number(v) if v.is_nan()));
        assert_eq!(cells[2], Cell::Number(f64::INFINITY));
        let refused = |body: &str| parse_predict(body.as_bytes()).unwrap_err();
        assert!(refused("{").contains("invalid JSON body"));
        assert!(refused(r#"{"rows": []} x"#).contains("invalid JSON body"));
        assert_eq!(refused("[1]"), "body: expected an object like {\"rows\": [[...], ...]}");
        assert_eq!(refused(r#"{"row": []}"#), "body: unknown field 'row' (fields: rows, allow_missing)");
        assert_eq!(refused(r#"{"rows": 3}"#), "rows: missing, or not an array of rows");
        assert_eq!(refused(r#"{}"#), "rows: missing, or not an array of rows");
        assert_eq!(refused(r#"{"rows": [[[1]]]}"#), "rows[0][0]: nested values are not allowed, got an array");
        assert_eq!(refused(r#"{"rows": [[1], {"a": {}}]}"#), "rows[1].a: nested values are not allowed, got an object");
        assert_eq!(
            refused(r#"{"rows": [[1], 7]}"#),
            "rows[1]: expected an array of values or an object of columns, got 7"
        );
        assert_eq!(
            refused(r#"{"rows": [], "allow_missing": "yes"}"#),
            "allow_missing: expected true or false, got \"yes\""
        );
    }

    #[test]
    fn too_many_rows_are_counted_and_refused() {
        let body = format!("{{\"rows\": [{}]}}", vec!["[1]"; MAX_ROWS + 2].join(","));
        assert_eq!(
            parse_predict(body.as_bytes()).unwrap_err(),
            format!("rows: {} rows in one request; at most {MAX_ROWS}", MAX_ROWS + 2)
        );
        let body = format!("{{\"rows\": [{}]}}", vec!["[1]"; MAX_ROWS].join(","));
        assert_eq!(parse_predict(body.as_bytes()).unwrap().0.len(), MAX_ROWS);
    }
}

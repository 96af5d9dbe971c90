//! Turning the rows a client sent into a shard the model's pipeline reads,
//! refusing anything that does not fit the dataset's columns with a message
//! that names the row and the column.

use std::collections::HashMap;

use mass_protocol::{
    dataset::{ColumnKind, Schema, Shard, ShardColumn, Split},
    serving::{Cell, Column, ColumnValues, Matrix, Row, Rows},
};

/// Most rows one request may carry.
pub const MAX_ROWS: usize = 10_000;

/// Builds a shard of `rows` in `schema`'s column order. The label column is
/// left missing (a client may send it by name; it is ignored).
pub fn to_shard(schema: &Schema, rows: Rows, allow_missing: bool) -> Result<Shard, String> {
    match rows {
        Rows::Listed(rows) => listed_to_shard(schema, &rows, allow_missing),
        Rows::Columns(columns) => columns_to_shard(schema, columns, allow_missing),
        Rows::Matrix(matrix) => {
            check_matrix(schema, &matrix, allow_missing)?;
            let columns = matrix.to_columns().expect("a checked matrix holds numbers");
            columns_to_shard(
                schema,
                columns.into_iter().map(|values| Column { name: None, values }).collect(),
                allow_missing,
            )
        }
    }
}

/// Rows given as values in schema order, every one a finite number, as a
/// matrix (one vector, where a shard has one per column: 785 for a single
/// MNIST row, whose allocations were a third of its time). `None` for
/// anything else, which goes through [`to_shard`] and its messages.
pub fn listed_matrix(schema: &Schema, rows: &[Row]) -> Option<Matrix> {
    let width = schema.columns.len().checked_sub(1)?;
    if rows.is_empty() || rows.len() > MAX_ROWS || width == 0 {
        return None;
    }
    let mut values = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let Row::Values(cells) = row else { return None };
        if cells.len() != width {
            return None;
        }
        for cell in cells {
            match cell {
                Cell::Number(v) if v.is_finite() => values.push(*v),
                _ => return None,
            }
        }
    }
    Some(Matrix { columns: width, values: ColumnValues::Numbers(values) })
}

/// Checks a matrix of the feature columns as its columns would be checked:
/// its width and row count, and NaN and infinity as in a column of numbers,
/// each named by its row and column.
pub fn check_matrix(schema: &Schema, matrix: &Matrix, allow_missing: bool) -> Result<(), String> {
    let features = feature_columns(schema);
    if matrix.columns != features.len() {
        return Err(wrong_width(schema, &features, 0, matrix.columns));
    }
    if !matrix.values.len().is_multiple_of(matrix.columns) {
        return Err(format!("rows: {} values do not fill rows of {} columns", matrix.values.len(), matrix.columns));
    }
    check_count(matrix.rows())?;
    let at = |i: usize| format!("rows[{}].{}", i / matrix.columns, schema.columns[features[i % matrix.columns]].name);
    match &matrix.values {
        ColumnValues::Cells(_) => Err("rows: a matrix holds numbers, not cells".into()),
        // Bytes are whole numbers: none missing, none infinite.
        ColumnValues::Bytes(_) => Ok(()),
        ColumnValues::Float32(values) => check_numbers(values, allow_missing, at),
        ColumnValues::Numbers(values) => check_numbers(values, allow_missing, at),
    }
}

fn check_count(rows: usize) -> Result<(), String> {
    if rows == 0 {
        return Err("rows: the batch is empty; send at least one row".into());
    }
    if rows > MAX_ROWS {
        return Err(format!("rows: {rows} rows in one request; at most {MAX_ROWS}"));
    }
    Ok(())
}

fn listed_to_shard(schema: &Schema, rows: &[Row], allow_missing: bool) -> Result<Shard, String> {
    check_count(rows.len())?;
    let features = feature_columns(schema);
    let width = schema.columns.len();
    // Only rows of named values need the names (a single row of MNIST's
    // 784 values spent more hashing them than reading the row).
    let by_name: Option<HashMap<&str, usize>> = rows
        .iter()
        .any(|row| matches!(row, Row::Named(_)))
        .then(|| schema.columns.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect());
    // Column-major: the cell each row gives each column, in one allocation.
    // A row's writes touch one entry per column, and consecutive rows the
    // same cache lines; each column is then read in one sweep.
    let n = rows.len();
    let mut given: Vec<Option<&Cell>> = vec![None; n * width];
    for (r, row) in rows.iter().enumerate() {
        match row {
            Row::Values(values) => {
                if values.len() != features.len() {
                    return Err(wrong_width(schema, &features, r, values.len()));
                }
                for (&c, value) in features.iter().zip(values) {
                    given[c * n + r] = Some(value);
                }
            }
            Row::Named(pairs) => {
                let by_name = by_name.as_ref().expect("built when a row is named");
                for (name, value) in pairs {
                    let Some(&c) = by_name.get(name.as_str()) else {
                        return Err(format!(
                            "rows[{r}]: unknown column '{name}'; the model reads {}",
                            preview(schema, &features)
                        ));
                    };
                    given[c * n + r] = Some(value);
                }
                if let Some(&missing) = features.iter().find(|&&c| given[c * n + r].is_none()) {
                    return Err(format!(
                        "rows[{r}]: column '{}' is missing (send null for a missing value)",
                        schema.columns[missing].name
                    ));
                }
            }
        }
    }
    let mut columns = Vec::with_capacity(width);
    for (c, info) in schema.columns.iter().enumerate() {
        let check = c != schema.label;
        let cells = given[c * n..(c + 1) * n]
            .iter()
            .map(|cell| if check { cell.cloned().unwrap_or(Cell::Missing) } else { Cell::Missing });
        columns.push(column(&info.name, info.kind, cells, check, allow_missing)?);
    }
    Ok(Shard { first_row: 0, columns, splits: vec![Split::Test; rows.len()] })
}

/// A batch of whole columns as a shard: columns are matched to the schema
/// once, not per row, and numbers go into numeric columns as they are.
fn columns_to_shard(schema: &Schema, columns: Vec<Column>, allow_missing: bool) -> Result<Shard, String> {
    let rows = columns.first().map_or(0, |c| c.values.len());
    check_count(rows)?;
    let label = |i: usize, c: &Column| c.name.clone().unwrap_or_else(|| format!("number {i}"));
    if let Some((i, c)) = columns.iter().enumerate().find(|(_, c)| c.values.len() != rows) {
        return Err(format!("columns: column {} has {} values, the first {rows}", label(i, c), c.values.len()));
    }
    let features = feature_columns(schema);
    let mut given: Vec<Option<ColumnValues>> = vec![None; schema.columns.len()];
    if columns.iter().all(|c| c.name.is_none()) {
        if columns.len() != features.len() {
            return Err(wrong_width(schema, &features, 0, columns.len()));
        }
        for (&c, column) in features.iter().zip(columns) {
            given[c] = Some(column.values);
        }
    } else {
        let by_name: HashMap<&str, usize> =
            schema.columns.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
        for (i, column) in columns.into_iter().enumerate() {
            let Some(name) = &column.name else {
                return Err(format!("columns: column number {i} has no name; name every column or none"));
            };
            let Some(&c) = by_name.get(name.as_str()) else {
                return Err(format!(
                    "columns: unknown column '{name}'; the model reads {}",
                    preview(schema, &features)
                ));
            };
            if given[c].replace(column.values).is_some() {
                return Err(format!("columns: column '{name}' is given twice"));
            }
        }
        if let Some(&missing) = features.iter().find(|&&c| given[c].is_none()) {
            return Err(format!(
                "columns: column '{}' is missing (send nulls for missing values)",
                schema.columns[missing].name
            ));
        }
    }
    let mut shard_columns = Vec::with_capacity(schema.columns.len());
    for (c, values) in given.into_iter().enumerate() {
        let (name, kind) = (&schema.columns[c].name, schema.columns[c].kind);
        shard_columns.push(match values {
            // The label: left missing, whatever was sent under its name.
            _ if c == schema.label => {
                column(name, kind, std::iter::repeat_n(Cell::Missing, rows), false, allow_missing)?
            }
            Some(ColumnValues::Numbers(numbers)) if kind == ColumnKind::Numeric => {
                check_numbers(&numbers, allow_missing, |r| format!("rows[{r}].{name}"))?;
                ShardColumn::Numeric(numbers)
            }
            Some(ColumnValues::Float32(numbers)) if kind == ColumnKind::Numeric => {
                check_numbers(&numbers, allow_missing, |r| format!("rows[{r}].{name}"))?;
                ShardColumn::Float32(numbers)
            }
            // Bytes are whole numbers: none missing, none infinite.
            Some(ColumnValues::Bytes(values)) if kind == ColumnKind::Numeric => {
                ShardColumn::Bytes { values, missing: Vec::new() }
            }
            Some(values) => column(name, kind, values.into_cells().into_iter(), true, allow_missing)?,
            // Not reached: every feature column was matched above.
            None => column(name, kind, std::iter::repeat_n(Cell::Missing, rows), true, allow_missing)?,
        });
    }
    Ok(Shard { first_row: 0, columns: shard_columns, splits: vec![Split::Test; rows] })
}

/// Checks numbers as [`column`] checks numeric cells; `at(i)` names the
/// row and column of the `i`th.
fn check_numbers<T: Copy + Into<f64>>(
    numbers: &[T],
    allow_missing: bool,
    at: impl Fn(usize) -> String,
) -> Result<(), String> {
    let value = |i: usize| -> f64 { numbers[i].into() };
    if let Some(i) = (0..numbers.len()).find(|&i| !value(i).is_finite()) {
        if value(i).is_infinite() {
            return Err(format!("{}: infinity is not a value", at(i)));
        }
        if !allow_missing {
            return Err(format!("{}: null or NaN is refused; set \"allow_missing\": true to have it imputed", at(i)));
        }
        if let Some(i) = (0..numbers.len()).find(|&i| value(i).is_infinite()) {
            return Err(format!("{}: infinity is not a value", at(i)));
        }
    }
    Ok(())
}

/// The rows of several shards of one schema as one shard (categories are
/// coded per shard, so codes are mapped to the joined dictionary).
pub fn concat(parts: Vec<Shard>) -> Shard {
    let mut parts = parts.into_iter();
    let Some(mut joined) = parts.next() else { return Shard { first_row: 0, columns: vec![], splits: vec![] } };
    for part in parts {
        joined.splits.extend(part.splits);
        for (into, column) in joined.columns.iter_mut().zip(part.columns) {
            match (into, column) {
                (into, numbers) if into.is_numeric() => into.extend_numbers(numbers),
                (ShardColumn::Text(a), ShardColumn::Text(b)) => a.extend(b),
                (
                    ShardColumn::Categorical { values, codes },
                    ShardColumn::Categorical { values: more, codes: more_codes },
                ) => {
                    let mapped: Vec<u32> = more
                        .into_iter()
                        .map(|v| match values.iter().position(|x| *x == v) {
                            Some(i) => i as u32,
                            None => {
                                values.push(v);
                                (values.len() - 1) as u32
                            }
                        })
                        .collect();
                    codes.extend(more_codes.into_iter().map(|c| mapped.get(c as usize).copied().unwrap_or(u32::MAX)));
                }
                _ => {}
            }
        }
    }
    joined
}

/// The schema's columns a row gives values for: all but the label.
fn feature_columns(schema: &Schema) -> Vec<usize> {
    (0..schema.columns.len()).filter(|&c| c != schema.label).collect()
}

/// Row `r` gives `got` values where the model reads `features`.
fn wrong_width(schema: &Schema, features: &[usize], r: usize, got: usize) -> String {
    format!(
        "rows[{r}]: {got} values, but the model reads {} columns ({}); send them in that order",
        features.len(),
        preview(schema, features)
    )
}

/// The first few feature column names, for messages.
fn preview(schema: &Schema, features: &[usize]) -> String {
    let names: Vec<&str> = features.iter().take(4).map(|&c| schema.columns[c].name.as_str()).collect();
    let more = if features.len() > 4 { format!(", ... {} in all", features.len()) } else { String::new() };
    format!("{}{more}", names.join(", "))
}

fn column(
    name: &str,
    kind: ColumnKind,
    cells: impl ExactSizeIterator<Item = Cell>,
    check: bool,
    allow_missing: bool,
) -> Result<ShardColumn, String> {
    let missing = |r: usize, what: &str| -> Result<(), String> {
        if allow_missing || !check {
            Ok(())
        } else {
            Err(format!("rows[{r}].{name}: {what} is refused; set \"allow_missing\": true to have it imputed"))
        }
    };
    Ok(match kind {
        ColumnKind::Numeric => {
            let mut values = Vec::with_capacity(cells.len());
            for (r, cell) in cells.enumerate() {
                values.push(match cell {
                    Cell::Number(v) if v.is_finite() => v,
                    Cell::Number(v) if v.is_nan() => {
                        missing(r, "NaN")?;
                        f64::NAN
                    }
                    Cell::Number(_) => return Err(format!("rows[{r}].{name}: infinity is not a value")),
                    Cell::Missing => {
                        missing(r, "null")?;
                        f64::NAN
                    }
                    Cell::Bool(b) => f64::from(u8::from(b)),
                    Cell::Text(text) => {
                        return Err(format!("rows[{r}].{name}: expected a number, got the text {text:?}"));
                    }
                });
            }
            ShardColumn::Numeric(values)
        }
        ColumnKind::Categorical => {
            let mut values: Vec<String> = Vec::new();
            let mut codes = Vec::with_capacity(cells.len());
            for (r, cell) in cells.enumerate() {
                let Some(text) = as_text(cell) else {
                    missing(r, "null")?;
                    codes.push(u32::MAX);
                    continue;
                };
                let code = values.iter().position(|v| *v == text).unwrap_or_else(|| {
                    values.push(text);
                    values.len() - 1
                });
                codes.push(code as u32);
            }
            ShardColumn::Categorical { values, codes }
        }
        ColumnKind::Text => {
            let mut values = Vec::with_capacity(cells.len());
            for (r, cell) in cells.enumerate() {
                let text = as_text(cell);
                if text.is_none() {
                    missing(r, "null")?;
                }
                values.push(text);
            }
            ShardColumn::Text(values)
        }
    })
}

/// A cell as category or text; numbers as they would read in a CSV.
fn as_text(cell: Cell) -> Option<String> {
    match cell {
        Cell::Missing => None,
        Cell::Text(text) => Some(text),
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => Some(format!("{}", v as i64)),
        Cell::Number(v) => Some(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let column = |name: &str, kind| mass_protocol::dataset::Column { name: name.into(), kind };
        Schema {
            columns: vec![
                column("age", ColumnKind::Numeric),
                column("label", ColumnKind::Categorical),
                column("city", ColumnKind::Categorical),
                column("note", ColumnKind::Text),
            ],
            label: 1,
        }
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn arrays_and_objects_give_the_same_shard() {
        let array = Row::Values(vec![Cell::Number(30.0), Cell::Number(7.0), text("hi")]);
        let object = Row::Named(vec![
            ("note".into(), text("hi")),
            ("city".into(), text("7")),
            ("age".into(), Cell::Number(30.0)),
            ("label".into(), text("ignored")),
        ]);
        let a = to_shard(&schema(), vec![array].into(), false).unwrap();
        let b = to_shard(&schema(), vec![object].into(), false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.columns[0], ShardColumn::Numeric(vec![30.0]));
        assert_eq!(a.columns[1], ShardColumn::Categorical { values: vec![], codes: vec![u32::MAX] });
    }

    #[test]
    fn every_bad_row_is_named() {
        let s = schema();
        let bad = |rows: Vec<Row>| to_shard(&s, rows.into(), false).unwrap_err();
        assert!(bad(vec![]).contains("empty"));
        assert!(bad(vec![Row::Values(vec![Cell::Number(1.0)])]).contains("rows[0]: 1 values, but the model reads 3"));
        let unknown = Row::Named(vec![("agee".into(), Cell::Number(1.0))]);
        assert!(bad(vec![unknown]).contains("unknown column 'agee'"));
        let missing = Row::Named(vec![("age".into(), Cell::Number(1.0)), ("city".into(), text("x"))]);
        assert!(bad(vec![missing]).contains("column 'note' is missing"));
        let ok = Row::Values(vec![Cell::Number(1.0), text("x"), text("y")]);
        let word = Row::Values(vec![text("old"), text("x"), text("y")]);
        assert!(bad(vec![ok.clone(), word]).contains("rows[1].age: expected a number, got the text \"old\""));
        let nan = Row::Values(vec![Cell::Number(f64::NAN), text("x"), text("y")]);
        assert!(bad(vec![nan.clone()]).contains("rows[0].age: NaN is refused"));
        let inf = Row::Values(vec![Cell::Number(f64::INFINITY), text("x"), text("y")]);
        assert!(bad(vec![inf]).contains("infinity"));
        let null = Row::Values(vec![Cell::Number(1.0), Cell::Missing, text("y")]);
        assert!(bad(vec![null.clone()]).contains("rows[0].city: null is refused"));
        // Allowed, they become missing values for the pipeline to impute.
        let shard = to_shard(&s, vec![nan, null].into(), true).unwrap();
        assert!(matches!(&shard.columns[0], ShardColumn::Numeric(v) if v[0].is_nan()));
        assert!(bad(vec![ok; MAX_ROWS + 1]).contains("at most"));
    }

    /// A matrix sent to a model that reads shards (its columns are not all
    /// numbers) gives the shard of the same values as columns.
    #[test]
    fn a_matrix_gives_the_shard_of_its_columns() {
        let s = schema();
        let values = vec![30.0, 7.0, 1.0, 41.0, 8.0, f64::NAN];
        let matrix = Rows::Matrix(Matrix { columns: 3, values: ColumnValues::Numbers(values) });
        let columns = Rows::Columns(vec![
            numbers(None, &[30.0, 41.0]),
            numbers(None, &[7.0, 8.0]),
            numbers(None, &[1.0, f64::NAN]),
        ]);
        let (a, b) = (to_shard(&s, matrix.clone(), true).unwrap(), to_shard(&s, columns, true).unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "NaN != NaN, so compared as text");
        assert!(to_shard(&s, matrix, false).unwrap_err().starts_with("rows[1].note: null or NaN is refused"));
    }

    fn numbers(name: Option<&str>, values: &[f64]) -> Column {
        Column { name: name.map(str::to_owned), values: ColumnValues::Numbers(values.to_vec()) }
    }

    fn cells(name: Option<&str>, values: Vec<Cell>) -> Column {
        Column { name: name.map(str::to_owned), values: ColumnValues::Cells(values) }
    }

    #[test]
    fn columns_give_the_shard_of_the_same_rows() {
        let rows = vec![
            Row::Values(vec![Cell::Number(30.0), text("7"), text("hi")]),
            Row::Values(vec![Cell::Number(41.5), Cell::Missing, text("yo")]),
        ];
        let listed = to_shard(&schema(), rows.into(), true).unwrap();
        let unnamed = Rows::Columns(vec![
            numbers(None, &[30.0, 41.5]),
            numbers(None, &[7.0, f64::NAN]),
            cells(None, vec![text("hi"), text("yo")]),
        ]);
        assert_eq!(to_shard(&schema(), unnamed, true).unwrap(), listed);
        let named = Rows::Columns(vec![
            cells(Some("note"), vec![text("hi"), text("yo")]),
            numbers(Some("label"), &[1.0, 2.0]),
            cells(Some("city"), vec![text("7"), Cell::Missing]),
            numbers(Some("age"), &[30.0, 41.5]),
        ]);
        assert_eq!(to_shard(&schema(), named, true).unwrap(), listed);
    }

    #[test]
    fn every_bad_column_is_named() {
        let s = schema();
        let bad = |columns: Vec<Column>| to_shard(&s, Rows::Columns(columns), false).unwrap_err();
        let city = || cells(Some("city"), vec![text("x")]);
        let note = || cells(Some("note"), vec![text("y")]);
        assert!(bad(vec![]).contains("empty"));
        assert!(bad(vec![numbers(None, &[1.0])]).contains("rows[0]: 1 values, but the model reads 3 columns"));
        assert!(bad(vec![numbers(Some("agee"), &[1.0]), city(), note()]).contains("unknown column 'agee'"));
        assert!(bad(vec![numbers(Some("age"), &[1.0]), city()]).contains("column 'note' is missing"));
        assert!(bad(vec![numbers(Some("age"), &[1.0]), numbers(Some("age"), &[1.0])]).contains("given twice"));
        assert!(bad(vec![numbers(Some("age"), &[1.0]), numbers(None, &[1.0])]).contains("no name"));
        assert!(bad(vec![numbers(Some("age"), &[1.0, 2.0]), city(), note()]).contains("has 1 values, the first 2"));
        let age = |v: &[f64]| numbers(Some("age"), v);
        assert!(bad(vec![age(&[f64::NAN]), city(), note()]).contains("rows[0].age: null or NaN is refused"));
        assert!(bad(vec![age(&[f64::INFINITY]), city(), note()]).contains("rows[0].age: infinity"));
        let two = |name: &str, cell: Cell| cells(Some(name), vec![cell.clone(), cell]);
        let allowed =
            Rows::Columns(vec![age(&[f64::NAN, f64::NEG_INFINITY]), two("city", text("x")), two("note", text("y"))]);
        assert!(to_shard(&s, allowed, true).unwrap_err().contains("rows[1].age: infinity"));
        let word = cells(Some("age"), vec![text("old")]);
        assert!(bad(vec![word, city(), note()]).contains("rows[0].age: expected a number"));
        assert!(bad(vec![age(&vec![1.0; MAX_ROWS + 1])]).contains("at most"));
    }

    /// Byte and f32 columns (`.npy` `u1`/`f4`, Arrow) stay narrow in a
    /// numeric column, give the same features' values, and are checked as
    /// f64 columns are; in a categorical column they are numbers as cells.
    #[test]
    fn narrow_columns_stay_narrow_and_are_checked_alike() {
        let s = schema();
        let column = |name: &str, values: ColumnValues| Column { name: Some(name.into()), values };
        let batch = |age: ColumnValues, city: ColumnValues| {
            Rows::Columns(vec![column("age", age), column("city", city), cells(Some("note"), vec![text("y"); 2])])
        };
        let shard = to_shard(&s, batch(ColumnValues::Bytes(vec![30, 41]), ColumnValues::Bytes(vec![7, 8])), false);
        let shard = shard.unwrap();
        assert_eq!(shard.columns[0], ShardColumn::Bytes { values: vec![30, 41], missing: vec![] });
        assert_eq!(
            shard.columns[2],
            ShardColumn::Categorical { values: vec!["7".into(), "8".into()], codes: vec![0, 1] }
        );
        let single = |v: &[f32]| ColumnValues::Float32(v.to_vec());
        let shard = to_shard(&s, batch(single(&[30.5, 41.0]), ColumnValues::Bytes(vec![7, 7])), false).unwrap();
        assert_eq!(shard.columns[0], ShardColumn::Float32(vec![30.5, 41.0]));
        let refused = |age, allow| to_shard(&s, batch(age, ColumnValues::Bytes(vec![7, 7])), allow).unwrap_err();
        assert!(refused(single(&[1.0, f32::NAN]), false).contains("rows[1].age: null or NaN is refused"));
        assert!(refused(single(&[f32::NAN, f32::INFINITY]), true).contains("rows[1].age: infinity"));
    }
}

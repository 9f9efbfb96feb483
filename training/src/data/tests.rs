use std::path::PathBuf;

use weir_models::safetensors::Labels;

use super::*;

fn file(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.csv"));
    std::fs::write(&path, text).unwrap();
    path
}

fn columns(target: &str) -> Columns {
    Columns {
        target: target.to_owned(),
        ..Columns::default()
    }
}

fn read(tag: &str, text: &str, columns: &Columns) -> Result<Dataset, String> {
    read_csv(&file(tag, text), columns).map_err(|e| e.to_string())
}

#[test]
fn string_targets_are_sorted_classes_and_features_keep_their_order() {
    let text = "a,species,b\n1,virginica,2\n3,setosa,4\n5.5,virginica,-6e1\n";
    let data = read("strings", text, &columns("species")).unwrap();
    assert_eq!(data.features, ["a", "b"]);
    assert_eq!(data.values, [1.0, 2.0, 3.0, 4.0, 5.5, -60.0]);
    assert_eq!(
        data.target,
        Target::Classes {
            labels: Labels::Names(vec!["setosa".into(), "virginica".into()]),
            indices: vec![1, 0, 1],
        }
    );
    // --features picks and orders columns.
    let picked = Columns {
        features: vec!["b".into(), "a".into()],
        ..columns("species")
    };
    let data = read("picked", text, &picked).unwrap();
    assert_eq!(data.features, ["b", "a"]);
    assert_eq!(data.row(0), [2.0, 1.0]);
}

#[test]
fn integer_targets_are_classes_and_decimals_are_regression() {
    let data = read("ints", "x,y\n1,10\n2,-3\n3,10\n", &columns("y")).unwrap();
    assert_eq!(
        data.target,
        Target::Classes {
            labels: Labels::Integers(vec![-3, 10]),
            indices: vec![1, 0, 1],
        }
    );
    let data = read("floats", "x,y\n1,0.5\n2,1\n", &columns("y")).unwrap();
    assert_eq!(data.target, Target::Values(vec![0.5, 1.0]));
    // --task regression reads integers as values.
    let forced = Columns {
        task: Some(Task::Regression),
        ..columns("y")
    };
    let data = read("forced", "x,y\n1,10\n2,-3\n", &forced).unwrap();
    assert_eq!(data.target, Target::Values(vec![10.0, -3.0]));
}

#[test]
fn quoted_fields_blank_lines_and_padding_are_read() {
    let text = "\"x\",\"label\"\n\"1.5\",\"a, b\"\n\n 2 , c\n";
    let data = read("quoted", text, &columns("label")).unwrap();
    assert_eq!(data.values, [1.5, 2.0]);
    assert_eq!(data.rows(), 2);
}

#[test]
fn every_data_problem_names_where_it_is() {
    let cases: Vec<(&str, &str, Columns, &str)> = vec![
        ("empty", "", columns("y"), "the file is empty"),
        ("blank", "\n \n", columns("y"), "the file is empty"),
        ("header-only", "x,y\n", columns("y"), "has a header but no data rows"),
        (
            "no-target",
            "x,y\n1,2\n",
            columns("label"),
            "no column 'label'; the columns are x, y",
        ),
        (
            "no-feature",
            "x,y\n1,2\n",
            Columns {
                features: vec!["z".into()],
                ..columns("y")
            },
            "no column 'z'",
        ),
        (
            "target-as-feature",
            "x,y\n1,2\n",
            Columns {
                features: vec!["y".into()],
                ..columns("y")
            },
            "'y' is the target; it cannot also be a feature",
        ),
        ("only-target", "y\n1\n", columns("y"), "no feature columns"),
        (
            "feature-twice",
            "x,y\n1,2\n",
            Columns {
                features: vec!["x".into(), "x".into()],
                ..columns("y")
            },
            "feature 'x' is listed twice",
        ),
        ("twice", "x,x,y\n1,2,3\n", columns("y"), "column 'x' appears twice"),
        (
            "text-feature",
            "x,y\n1,a\n2,b\nhello,a\n",
            columns("y"),
            "row 3 (line 4), column 'x': 'hello' is not a number",
        ),
        (
            "empty-feature",
            "x,z,y\n1,2,a\n2,,b\n",
            columns("y"),
            "row 2 (line 3), column 'z': the value is empty",
        ),
        (
            "infinite",
            "x,y\n1,a\ninf,b\n",
            columns("y"),
            "row 2 (line 3), column 'x': 'inf' is not a finite number",
        ),
        (
            "empty-target",
            "x,y\n1,a\n2,\n",
            columns("y"),
            "row 2 (line 3), column 'y': the target is empty",
        ),
        (
            "ragged",
            "x,y\n1,a\n2,b,3\n",
            columns("y"),
            "line 3 has 3 fields but the header has 2",
        ),
        (
            "one-class",
            "x,y\n1,a\n2,a\n",
            columns("y"),
            "the target 'y' has only one class ('a'); classification needs at least two",
        ),
        (
            "text-regression",
            "x,y\n1,0.5\n2,high\n",
            Columns {
                task: Some(Task::Regression),
                ..columns("y")
            },
            "row 2 (line 3), column 'y': 'high' is not a number (a regression target must be numeric)",
        ),
    ];
    for (tag, text, columns, expected) in cases {
        let err = read(tag, text, &columns).unwrap_err();
        assert!(
            err.contains(expected),
            "{tag}: want {expected:?} in {err:?}"
        );
        assert!(
            err.contains(&format!("{tag}.csv")),
            "{tag}: names the file: {err}"
        );
    }
    let missing = read_csv(Path::new("/nonexistent/weir.csv"), &columns("y")).unwrap_err();
    assert!(missing
        .to_string()
        .contains("/nonexistent/weir.csv: cannot read"));
}

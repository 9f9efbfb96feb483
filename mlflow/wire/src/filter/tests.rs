use proptest::prelude::*;

use super::*;

fn clause(entity: Entity, comparator: Comparator, value: Literal, position: usize) -> Clause {
    Clause {
        entity,
        comparator,
        value,
        position,
    }
}

fn text(value: &str) -> Literal {
    Literal::Text(value.to_owned())
}

fn refusal(filter: &str) -> String {
    match Filter::parse(filter) {
        Ok(parsed) => panic!("{filter:?} parsed as {parsed:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn the_usual_run_filters_parse() {
    let filter = Filter::parse(
        "metrics.acc > 0.9 and params.lr = '0.01' AND tags.`mlflow.user` LIKE 'al%' and attributes.status = 'FINISHED' and run_id IN ('a', 'b') and metrics.\"f1 score\" <= -1e-3",
    )
    .unwrap();
    assert_eq!(filter.clauses.len(), 6);
    assert_eq!(filter.clauses[0].entity, Entity::Metric("acc".into()));
    assert_eq!(filter.clauses[0].value, Literal::Number(0.9));
    assert_eq!(filter.clauses[1].position, 23);
    assert_eq!(filter.clauses[2].entity, Entity::Tag("mlflow.user".into()));
    assert_eq!(filter.clauses[3].entity, Entity::Attribute("status".into()));
    assert_eq!(
        filter.clauses[4].value,
        Literal::List(vec!["a".into(), "b".into()])
    );
    assert_eq!(filter.clauses[5].entity, Entity::Metric("f1 score".into()));
    assert_eq!(filter.clauses[5].value, Literal::Number(-1e-3));
    assert!(Filter::parse("  ").unwrap().clauses.is_empty());
    assert!(Filter::parse("").unwrap().clauses.is_empty());
}

#[test]
fn the_registry_clients_own_prompt_clause_parses() {
    let filter =
        Filter::parse("name LIKE 'search_%' AND tag.`mlflow.prompt.is_prompt` != 'true'").unwrap();
    assert_eq!(
        filter.clauses,
        [
            clause(
                Entity::Attribute("name".into()),
                Comparator::Like,
                text("search_%"),
                1
            ),
            clause(
                Entity::Tag("mlflow.prompt.is_prompt".into()),
                Comparator::Ne,
                text("true"),
                26
            ),
        ]
    );
}

#[test]
fn every_prefix_and_comparator_is_read() {
    for (prefix, entity) in [
        ("", Entity::Attribute("k".into())),
        ("attributes.", Entity::Attribute("k".into())),
        ("attribute.", Entity::Attribute("k".into())),
        ("ATTR.", Entity::Attribute("k".into())),
        ("run.", Entity::Attribute("k".into())),
        ("params.", Entity::Param("k".into())),
        ("param.", Entity::Param("k".into())),
        ("parameters.", Entity::Param("k".into())),
        ("metrics.", Entity::Metric("k".into())),
        ("metric.", Entity::Metric("k".into())),
        ("tags.", Entity::Tag("k".into())),
        ("Tag.", Entity::Tag("k".into())),
    ] {
        let parsed = Filter::parse(&format!("{prefix}k = 1")).unwrap();
        assert_eq!(parsed.clauses[0].entity, entity, "{prefix}");
    }
    for (written, comparator) in [
        ("=", Comparator::Eq),
        ("!=", Comparator::Ne),
        ("<", Comparator::Lt),
        ("<=", Comparator::Le),
        (">", Comparator::Gt),
        (">=", Comparator::Ge),
        ("like", Comparator::Like),
        ("ILike", Comparator::ILike),
    ] {
        let parsed = Filter::parse(&format!("metrics.k {written} 'v'")).unwrap();
        assert_eq!(parsed.clauses[0].comparator, comparator, "{written}");
        // Without spaces too.
        let parsed = Filter::parse(&format!("metrics.k{written}'v'"));
        if written.chars().all(char::is_alphabetic) {
            // `k{word}` is one word: the comparator is missing.
            assert!(parsed.is_err(), "{written}");
        } else {
            assert_eq!(parsed.unwrap().clauses[0].comparator, comparator);
        }
    }
    let parsed = Filter::parse("tags.t NOT  in ('a',\"b\") and tags.u In ('c')").unwrap();
    assert_eq!(parsed.clauses[0].comparator, Comparator::NotIn);
    assert_eq!(
        parsed.clauses[0].value,
        Literal::List(vec!["a".into(), "b".into()])
    );
    assert_eq!(parsed.clauses[1].comparator, Comparator::In);
}

#[test]
fn quotes_operators_and_and_inside_values_are_values() {
    for (filter, entity, value) in [
        ("name LIKE 'a=b%'", Entity::Attribute("name".into()), "a=b%"),
        ("tags.note = 'x != y'", Entity::Tag("note".into()), "x != y"),
        (
            "params.\"odd key\" = '1'",
            Entity::Param("odd key".into()),
            "1",
        ),
        (
            "params.'odd key' = '1'",
            Entity::Param("odd key".into()),
            "1",
        ),
        ("tags.`my key` = 'v'", Entity::Tag("my key".into()), "v"),
        (
            "`odd name` = 'v'",
            Entity::Attribute("odd name".into()),
            "v",
        ),
        ("name = 'é'", Entity::Attribute("name".into()), "é"),
        (
            "name = 'salt and pepper'",
            Entity::Attribute("name".into()),
            "salt and pepper",
        ),
        ("name = \"it's\"", Entity::Attribute("name".into()), "it's"),
        (
            "name = 'say \"hi\"'",
            Entity::Attribute("name".into()),
            "say \"hi\"",
        ),
        ("name = 'a`b'", Entity::Attribute("name".into()), "a`b"),
        (
            "name = 'back\\slash'",
            Entity::Attribute("name".into()),
            "back\\slash",
        ),
        (
            "tags.mlflow.user = ''",
            Entity::Tag("mlflow.user".into()),
            "",
        ),
        ("params.é = '😀'", Entity::Param("é".into()), "😀"),
    ] {
        let parsed = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(
            parsed.clauses,
            [clause(entity, parsed.clauses[0].comparator, text(value), 1)],
            "{filter}"
        );
    }
    let parsed = Filter::parse("name = 'salt and pepper' and run_id = \"r1\"").unwrap();
    assert_eq!(parsed.clauses[1].entity, Entity::Attribute("run_id".into()));
    assert_eq!(parsed.clauses[1].value, text("r1"));
}

#[test]
fn bad_filters_name_the_problem() {
    for (bad, expected) in [
        ("metrics.acc >", "a number or a quoted string"),
        ("metrics.acc > 0.9 or params.x = 'y'", "OR is not supported"),
        ("params.lr = 'unterminated", "closing '"),
        ("foo.bar = 'x'", "unknown entity type 'foo'"),
        ("metrics.acc ~ 3", "a comparator"),
        ("metrics. = 3", "a key name"),
        ("metrics. `acc` = 3", "a key name"),
        ("tags.`` = 'x'", "a key name"),
        ("name = `x`", "a number or a quoted string"),
        ("name = 'a' 'b'", "AND between clauses or the end"),
        ("name = 'a' AND", "a key such as name"),
        ("name IN ()", "a quoted string in the list"),
        ("name IN ('a' 'b')", "',' or ')' in a list"),
        ("name IN ('a', 1)", "a quoted string in the list"),
        ("name NOT LIKE 'a'", "IN after NOT"),
        ("(name = 'a')", "parentheses are not supported"),
        ("name = unquoted", "a number or a quoted string"),
        ("name LIKE", "a number or a quoted string"),
    ] {
        let err = refusal(bad);
        assert!(err.contains(expected), "{bad}: {err}");
        assert!(
            err.starts_with("invalid filter at position "),
            "{bad}: {err}"
        );
    }
}

#[test]
fn errors_give_the_character_position_and_what_was_found() {
    for (bad, message) in [
        (
            "é",
            "invalid filter at position 2: expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN), found the end",
        ),
        (
            "params.x IN (é)",
            "invalid filter at position 14: expected a quoted string in the list, found 'é'",
        ),
        (
            "name = 'unterminated",
            "invalid filter at position 8: expected a closing ' for the string that opens here, found the end",
        ),
        (
            "name ==",
            "invalid filter at position 7: expected a number or a quoted string, found '='",
        ),
        (
            "name = 'é' AND 😀",
            "invalid filter at position 16: expected a key such as name, params.<key>, metrics.<key> or tags.<key>, found '😀'",
        ),
        (
            "name 😀 'a'",
            "invalid filter at position 6: expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN), found '😀'",
        ),
        (
            "`",
            "invalid filter at position 1: expected a closing ` for the string that opens here, found the end",
        ),
        (
            "tags.` = 'x'",
            "invalid filter at position 6: expected a closing ` for the string that opens here, found the end",
        ),
        (
            "name = 'a'\0",
            "invalid filter at position 11: expected AND between clauses or the end, found '\\0'",
        ),
        (
            "name\u{7} = 'a'",
            "invalid filter at position 5: expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN), found '\\u{7}'",
        ),
        (
            "é.x = 'a'",
            "invalid filter at position 1: expected metrics., params., tags. or attributes. before a key, found unknown entity type 'é'",
        ),
        (
            "name = 'a' OR name = 'b'",
            "invalid filter at position 12: expected AND between clauses (OR is not supported), found 'OR'",
        ),
    ] {
        assert_eq!(refusal(bad), message, "{bad:?}");
    }
    assert_eq!(Filter::parse("params.x IN (é)").unwrap_err().position(), 14);
}

#[test]
fn long_filters_are_refused_without_echoing_them() {
    // 10 kB of one value: over the limit, and the answer does not repeat it.
    let long = format!("name = '{}'", "x".repeat(10 * 1024));
    let err = refusal(&long);
    assert_eq!(
        err,
        "invalid filter at position 8193: expected at most 8192 characters, found 10249 characters"
    );
    // Multi-byte characters count once each.
    let wide = format!("name = '{}'", "é".repeat(MAX_LENGTH - 9));
    assert_eq!(wide.chars().count(), MAX_LENGTH);
    assert!(Filter::parse(&wide).is_ok());
    assert!(Filter::parse(&format!("{wide} ")).is_err());
    // A long value inside the limit is shown cut short.
    let err = refusal(&format!("name = 'a' '{}'", "y".repeat(1000)));
    assert!(err.len() < 200, "{err}");
    // 10 kB of junk.
    let junk: String = "(é'`\0=".chars().cycle().take(10 * 1024).collect();
    assert!(refusal(&junk).starts_with("invalid filter at position "));
}

#[test]
fn at_most_a_hundred_clauses() {
    let clauses = |n: usize| vec!["tags.k = 'v'"; n].join(" AND ");
    assert_eq!(
        Filter::parse(&clauses(MAX_CLAUSES)).unwrap().clauses.len(),
        MAX_CLAUSES
    );
    let err = refusal(&clauses(MAX_CLAUSES + 1));
    assert!(err.contains("at most 100 clauses"), "{err}");
}

#[test]
fn order_by_terms() {
    assert_eq!(
        OrderBy::parse("metrics.acc DESC").unwrap(),
        OrderBy {
            entity: Entity::Metric("acc".into()),
            ascending: false
        }
    );
    assert_eq!(
        OrderBy::parse(" attributes.start_time asc ").unwrap(),
        OrderBy {
            entity: Entity::Attribute("start_time".into()),
            ascending: true
        }
    );
    assert_eq!(
        OrderBy::parse("metrics.`f1 score`").unwrap().entity,
        Entity::Metric("f1 score".into())
    );
    assert!(OrderBy::parse("start_time").unwrap().ascending);
    for (bad, message) in [
        (
            "start_time sideways",
            "invalid order_by at position 12: expected ASC or DESC, found 'sideways'",
        ),
        (
            "start_time DESC DESC",
            "invalid order_by at position 17: expected the end after ASC or DESC, found 'DESC'",
        ),
        (
            "",
            "invalid order_by at position 1: expected a key such as name, params.<key>, metrics.<key> or tags.<key>, found the end",
        ),
        (
            "é DESC ü",
            "invalid order_by at position 8: expected the end after ASC or DESC, found 'ü'",
        ),
    ] {
        assert_eq!(OrderBy::parse(bad).unwrap_err().to_string(), message);
    }
}

#[test]
fn entities_and_values_display_as_written() {
    assert_eq!(
        Entity::Tag("mlflow.user".into()).to_string(),
        "tags.mlflow.user"
    );
    assert_eq!(
        Entity::Metric("f1 score".into()).to_string(),
        "metrics.`f1 score`"
    );
    assert_eq!(Entity::Attribute("name".into()).to_string(), "name");
    assert_eq!(Comparator::NotIn.to_string(), "NOT IN");
    assert_eq!(text("a\nb").to_string(), "the string 'a\\nb'");
    assert_eq!(Literal::Number(1.5).to_string(), "the number 1.5");
    let err = FilterError::unsupported(3, "name or tags.<key>", "'x'");
    assert_eq!(
        err.to_string(),
        "invalid filter at position 3: expected name or tags.<key>, found 'x'"
    );
}

/// Pieces that make near-miss filters: keywords, operators, quotes, multi-byte characters.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "tags.",
            "tag.`",
            "params.\"",
            "metrics.",
            "attributes.",
            "run_id",
            " ",
            " AND ",
            " and ",
            " OR ",
            "=",
            "==",
            "!=",
            "!",
            "<",
            "<=",
            ">",
            ">=",
            " LIKE ",
            " ILIKE ",
            " IN ",
            " NOT IN ",
            " NOT ",
            "(",
            ")",
            ",",
            "'",
            "\"",
            "`",
            "'x'",
            "\"y\"",
            "`k`",
            "1.5",
            "-1e-3",
            "NaN",
            "é",
            "😀",
            "\0",
            "\u{301}",
            "\u{feff}",
            "ß",
            "中",
            "\r\n",
            ".",
            "",
            "asc",
            "DESC",
        ])
        .prop_map(str::to_owned),
        any::<char>().prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any text at all: an answer, never a panic, and an error's position is inside the text
    /// or just past it.
    #[test]
    fn any_text_is_answered_without_panicking(text in any::<String>()) {
        let end = text.chars().count() + 1;
        if let Err(err) = Filter::parse(&text) {
            prop_assert!((1..=end).contains(&err.position()), "{err}");
        }
        if let Err(err) = OrderBy::parse(&text) {
            prop_assert!((1..=end).contains(&err.position()), "{err}");
        }
    }

    /// Near-misses of real filters reach deeper into the grammar than random text does.
    #[test]
    fn near_miss_filters_are_answered_without_panicking(
        pieces in prop::collection::vec(fragment(), 0..24)
    ) {
        let text = pieces.concat();
        let end = text.chars().count() + 1;
        if let Err(err) = Filter::parse(&text) {
            prop_assert!((1..=end).contains(&err.position()), "{err}");
        }
        if let Err(err) = OrderBy::parse(&text) {
            prop_assert!((1..=end).contains(&err.position()), "{err}");
        }
    }

    /// Whatever a key and a value hold, quoting them reads them back unchanged.
    #[test]
    fn quoted_keys_and_values_read_back(
        key in "[^`]{1,20}",
        value in "[^']{0,20}",
    ) {
        let parsed = Filter::parse(&format!("tags.`{key}` != '{value}'"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            parsed.clauses,
            vec![clause(Entity::Tag(key), Comparator::Ne, text(&value), 1)]
        );
    }
}

"""Literal ports: which numbers are ports, and one consistent mapping per document."""
import itertools

from docrun.ports import PortMap, literal_ports


def fake_allocator(start=40000):
    counter = itertools.count(start)
    return lambda: next(counter)


def found(text):
    return [port for _, _, port in literal_ports(text)]


def test_ports_in_urls_flags_and_well_known_defaults():
    assert found("curl localhost:8080/v2 http://127.0.0.1:5000 [::1]:7001 db.internal:5432/x") == [8080, 5000, 7001, 5432]
    assert found("weir serve --http-port 8081 --admin-port=8002 --port 3000") == [8081, 8002, 3000]
    assert found("port = 9090\nWEIR_HTTP_PORT=8000 tracking on :5000; 8001") == [9090, 8000, 5000, 8001]


def test_numbers_that_are_not_ports():
    text = '{"count":1234} --epochs 100 --max-rows 8081 sha256:12345abc 1.8080 80800 8080.5 v8000 50000000 12:30:45'
    assert found(text) == []


def test_one_mapping_per_document_in_commands_and_output_alike():
    ports = PortMap(fake_allocator())
    command = ports.apply("weir registry --http-port 5000 & curl localhost:5000/health; curl :8080")
    output = ports.apply("listening on http://127.0.0.1:5000")
    assert command == "weir registry --http-port 40000 & curl localhost:40000/health; curl :40001"
    assert output == "listening on http://127.0.0.1:40000"
    assert ports.describe() == "5000→40000, 8080→40001"


def test_a_free_port_equal_to_a_literal_port_is_not_reused():
    values = iter([5000, 41000, 41000, 41001])
    ports = PortMap(lambda: next(values))
    assert ports.port(5000) == 41000
    assert ports.port(8080) == 41001

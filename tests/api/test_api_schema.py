# SPDX-License-Identifier: GPL-2.0-or-later
"""The slirp4netns API contract without sockets: requests, validation, exact replies."""

from __future__ import annotations

import ipaddress
import json

import pytest
from api_fakes import DEFAULT_GUEST, FakeService
from hypothesis import given
from hypothesis import strategies as st

from slirpy.api import schema
from slirpy.api.schema import (
    MAX_REQUEST,
    AddHostFwd,
    BadRequest,
    HostFwdEntry,
    ListHostFwd,
    RemoveHostFwd,
    is_complete,
    parse_request,
    render_added,
    render_entries,
    render_error,
    render_removed,
)
from slirpy.api.server import answer

pytestmark = pytest.mark.timeout(60)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
ANY = V4("0.0.0.0")

PODMAN_ADD = (
    b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0",'
    b'"host_port":8080,"guest_addr":"","guest_port":80}}\n'
)


def err(desc: str) -> bytes:
    return b'{"error":{"desc":"' + desc.encode() + b'"}}'


def add(**arguments: object) -> bytes:
    return json.dumps({"execute": "add_hostfwd", "arguments": arguments}).encode()


def remove(**arguments: object) -> bytes:
    return json.dumps({"execute": "remove_hostfwd", "arguments": arguments}).encode()


def fwd(
    proto: str = "tcp",
    host_addr: V4 | V6 = ANY,
    host_port: int = 8080,
    guest_addr: V4 | V6 | None = None,
    guest_port: int = 80,
    *,
    splice: bool | None = None,
) -> AddHostFwd:
    assert proto in ("tcp", "udp")
    return AddHostFwd(
        proto="tcp" if proto == "tcp" else "udp",
        host_addr=host_addr,
        host_port=host_port,
        guest_addr=guest_addr,
        guest_port=guest_port,
        splice=splice,
    )


# Requests that parse, and the command they become.
VALID = [
    pytest.param(PODMAN_ADD, fwd(), id="podman-add"),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"",'
        b'"host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}\n',
        fwd(guest_addr=V4("10.0.2.100")),
        id="rootlesskit-add-empty-host-addr",
    ),
    pytest.param(
        b'{"execute": "add_hostfwd", "arguments":{"proto": "tcp","host_port":8080,'
        b'"guest_port":80}}\n',
        fwd(),
        id="upstream-test-add-defaults",
    ),
    pytest.param(
        b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr":'
        b' "0.0.0.0", "host_port": 8080, "guest_addr": "10.0.2.100",'
        b' "guest_port": 80}}',
        fwd(guest_addr=V4("10.0.2.100")),
        id="man-page-add",
    ),
    pytest.param(
        add(proto="udp", host_port=5353, guest_port=53), fwd("udp", ANY, 5353, None, 53)
    ),
    pytest.param(
        add(proto="tcp", host_port=8080.7, guest_port=80.9), fwd(), id="trunc"
    ),
    pytest.param(
        add(proto="tcp", host_port=65535, guest_port=65535),
        fwd("tcp", ANY, 65535, None, 65535),
        id="max-ports",
    ),
    pytest.param(
        add(proto="tcp", host_port=1, guest_port=1),
        fwd("tcp", ANY, 1, None, 1),
        id="min-ports",
    ),
    pytest.param(
        add(proto="tcp", host_port=0, guest_port=80), fwd(host_port=0), id="host-port-0"
    ),
    pytest.param(
        add(proto="tcp", host_port=0.5, guest_port=80),
        fwd(host_port=0),
        id="host-port-0.5",
    ),
    pytest.param(
        add(proto="tcp", host_addr="127.0.0.1", host_port=8080, guest_port=80),
        fwd(host_addr=V4("127.0.0.1")),
        id="host-addr-loopback",
    ),
    pytest.param(
        add(proto="tcp", host_addr="::", host_port=8080, guest_port=80),
        fwd(host_addr=V6("::")),
        id="host-addr-v6-any",
    ),
    pytest.param(
        add(proto="tcp", host_addr="::1", host_port=8080, guest_port=80),
        fwd(host_addr=V6("::1")),
        id="host-addr-v6-loopback",
    ),
    pytest.param(
        add(proto="tcp", host_port=8080, guest_addr="8.8.8.8", guest_port=80),
        fwd(guest_addr=V4("8.8.8.8")),
        id="guest-addr-outside-subnet",
    ),
    pytest.param(
        add(proto="tcp", host_port=8080, guest_addr="fd00::100", guest_port=80),
        fwd(guest_addr=V6("fd00::100")),
        id="guest-addr-ipv6",
    ),
    pytest.param(
        add(proto="tcp", host_port=8080, guest_port=80, splice=True),
        fwd(splice=True),
        id="splice-true",
    ),
    pytest.param(
        add(proto="tcp", host_port=8080, guest_port=80, splice=False),
        fwd(splice=False),
        id="splice-false",
    ),
    pytest.param(
        add(proto="tcp", host_port=8080, guest_port=80, comment="x", extra=[1]),
        fwd(),
        id="unknown-members-ignored",
    ),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,'
        b'"guest_port":80}} {"execute":"list_hostfwd"}',
        fwd(),
        id="second-value-ignored",
    ),
    pytest.param(
        b" \t\r\n" + add(proto="tcp", host_port=8080, guest_port=80) + b"\n\n",
        fwd(),
        id="whitespace-around",
    ),
    pytest.param(
        add(proto="tcp", host_port=8080, guest_port=80) + b"\x00\xff garbage",
        fwd(),
        id="trailing-nul-and-binary",
    ),
    pytest.param(b'{"execute":"list_hostfwd"}', ListHostFwd(), id="list"),
    pytest.param(
        b'{"execute":"list_hostfwd","arguments":{"id":"x"}}',
        ListHostFwd(),
        id="list-arguments-ignored",
    ),
    pytest.param(
        b'{"execute": "remove_hostfwd", "arguments":{"id": 1}}\n',
        RemoveHostFwd(1),
        id="remove",
    ),
    pytest.param(remove(id=1.9), RemoveHostFwd(1), id="remove-id-truncated"),
    pytest.param(remove(id=123456), RemoveHostFwd(123456), id="remove-big-id"),
]


@pytest.mark.parametrize(("request_bytes", "command"), VALID)
def test_parse_valid(request_bytes: bytes, command: object) -> None:
    assert parse_request(request_bytes) == command


# Requests that are refused, and the exact text (slirp4netns's catalogue).
INVALID = [
    pytest.param(b"", schema.CANNOT_PARSE_JSON, id="empty"),
    pytest.param(b" \n", schema.CANNOT_PARSE_JSON, id="whitespace-only"),
    pytest.param(b"badjson\n", schema.CANNOT_PARSE_JSON, id="upstream-badjson"),
    pytest.param(
        b'{"execute":"list_hostfwd"', schema.CANNOT_PARSE_JSON, id="truncated"
    ),
    pytest.param(b'{"execute":list_hostfwd}', schema.CANNOT_PARSE_JSON, id="bare-word"),
    pytest.param(
        b"{'execute':'list_hostfwd'}", schema.CANNOT_PARSE_JSON, id="single-quotes"
    ),
    pytest.param(
        b'{"execute":"list_hostfwd","execute":"list_hostfwd"}',
        schema.CANNOT_PARSE_JSON,
        id="duplicate-key",
    ),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","proto":"udp"}}',
        schema.CANNOT_PARSE_JSON,
        id="duplicate-nested-key",
    ),
    pytest.param(b"NaN", schema.CANNOT_PARSE_JSON, id="nan"),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":Infinity}}',
        schema.CANNOT_PARSE_JSON,
        id="infinity",
    ),
    pytest.param(b"\x00" + PODMAN_ADD, schema.CANNOT_PARSE_JSON, id="leading-nul"),
    pytest.param(b"\xef\xbb\xbf{}", schema.CANNOT_PARSE_JSON, id="utf8-bom"),
    pytest.param(
        b'{"execute":"list\x00_hostfwd"}', schema.CANNOT_PARSE_JSON, id="nul-in-string"
    ),
    pytest.param(
        b"[" * 2000 + b"]" * 2000, schema.CANNOT_PARSE_JSON, id="deep-nesting"
    ),
    pytest.param(b"[1,2]", schema.NOT_AN_OBJECT, id="array"),
    pytest.param(b"42", schema.NOT_AN_OBJECT, id="number"),
    pytest.param(b'"add_hostfwd"', schema.NOT_AN_OBJECT, id="string"),
    pytest.param(b"null", schema.NOT_AN_OBJECT, id="null"),
    pytest.param(b"true\n", schema.NOT_AN_OBJECT, id="true"),
    pytest.param(
        b'{"unexpectedjson": 42}\n', schema.NO_EXECUTE, id="upstream-no-execute"
    ),
    pytest.param(b"{}", schema.NO_EXECUTE, id="empty-object"),
    pytest.param(b'{"execute":1}', schema.NO_EXECUTE, id="execute-number"),
    pytest.param(b'{"execute":null}', schema.NO_EXECUTE, id="execute-null"),
    pytest.param(
        b'{"execute":["list_hostfwd"]}', schema.NO_EXECUTE, id="execute-array"
    ),
    pytest.param(
        b'{"execute": "bad"}\n', schema.UNKNOWN_EXECUTE, id="upstream-unknown"
    ),
    pytest.param(
        b'{"execute":"LIST_HOSTFWD"}', schema.UNKNOWN_EXECUTE, id="case-sensitive"
    ),
    pytest.param(
        b'{"execute":"list_hostfwd\xff"}', schema.UNKNOWN_EXECUTE, id="non-utf8-execute"
    ),
    pytest.param(b'{"execute":""}', schema.UNKNOWN_EXECUTE, id="execute-empty"),
    pytest.param(b" " * MAX_REQUEST, schema.TOO_LARGE, id="4096-spaces"),
    pytest.param(b"\x00" * (MAX_REQUEST + 100), schema.TOO_LARGE, id="dev-zero"),
    pytest.param(
        PODMAN_ADD.ljust(MAX_REQUEST), schema.TOO_LARGE, id="valid-but-4096-bytes"
    ),
    # add_hostfwd: proto
    pytest.param(
        b'{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}\n',
        schema.BAD_PROTO,
        id="upstream-bad-proto",
    ),
    pytest.param(
        add(host_port=8080, guest_port=80), schema.BAD_PROTO, id="proto-missing"
    ),
    pytest.param(
        b'{"execute":"add_hostfwd"}', schema.BAD_PROTO, id="arguments-missing"
    ),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":["tcp"]}',
        schema.BAD_PROTO,
        id="arguments-array",
    ),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":"tcp"}',
        schema.BAD_PROTO,
        id="arguments-string",
    ),
    pytest.param(
        add(proto="TCP", host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-TCP"
    ),
    pytest.param(
        add(proto="sctp", host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-sctp"
    ),
    pytest.param(
        add(proto="tcp4", host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-tcp4"
    ),
    pytest.param(
        add(proto="tcp6", host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-tcp6"
    ),
    pytest.param(
        add(proto=6, host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-number"
    ),
    pytest.param(
        add(proto=None, host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-null"
    ),
    pytest.param(
        add(proto="", host_port=1, guest_port=1), schema.BAD_PROTO, id="proto-empty"
    ),
    # add_hostfwd: host_addr
    *[
        pytest.param(
            add(proto="tcp", host_addr=value, host_port=1, guest_port=1),
            schema.BAD_HOST_ADDR,
            id=f"host-addr-{value!r}",
        )
        for value in [
            "localhost",
            "1.2.3",
            "1.2.3.256",
            "01.2.3.4",
            " 1.2.3.4",
            "1.2.3.4 ",
            "0x7f.0.0.1",
            "10.0.2.0/24",
            "fe80::1%eth0",
            ":::",
            "1.2.3.4:80",
            5,
            None,
            True,
            ["0.0.0.0"],
        ]
    ],
    # add_hostfwd: host_port
    *[
        pytest.param(
            add(proto="tcp", host_port=value, guest_port=80),
            schema.BAD_HOST_PORT,
            id=f"host-port-{value!r}",
        )
        for value in [
            "8080",
            True,
            False,
            None,
            -1,
            -5,
            -1.5,
            65536,
            70000,
            1e300,
            [8080],
            {"port": 8080},
        ]
    ],
    pytest.param(
        add(proto="tcp", guest_port=80), schema.BAD_HOST_PORT, id="host-port-missing"
    ),
    pytest.param(
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1e400,'
        b'"guest_port":80}}',
        schema.BAD_HOST_PORT,
        id="host-port-overflow",
    ),
    # add_hostfwd: guest_addr
    *[
        pytest.param(
            add(proto="tcp", host_port=8080, guest_addr=value, guest_port=80),
            schema.BAD_GUEST_ADDR,
            id=f"guest-addr-{value!r}",
        )
        for value in ["bad", "fe80::1%lo", "10.0.2.100 ", 5, None, False]
    ],
    # add_hostfwd: guest_port
    *[
        pytest.param(
            add(proto="tcp", host_port=8080, guest_port=value),
            schema.BAD_GUEST_PORT,
            id=f"guest-port-{value!r}",
        )
        for value in [0, 0.5, -5, 65536, "80", False, True, None, []]
    ],
    pytest.param(
        add(proto="tcp", host_port=8080), schema.BAD_GUEST_PORT, id="guest-port-missing"
    ),
    # add_hostfwd: splice (slirpy)
    *[
        pytest.param(
            add(proto="tcp", host_port=8080, guest_port=80, splice=value),
            schema.BAD_SPLICE,
            id=f"splice-{value!r}",
        )
        for value in ["yes", "true", 1, 0, None]
    ],
    # Validation order: proto, host_addr, host_port, guest_addr, guest_port, splice.
    pytest.param(
        add(
            proto="x",
            host_addr="x",
            host_port="x",
            guest_addr="x",
            guest_port="x",
            splice=1,
        ),
        schema.BAD_PROTO,
        id="order-proto-first",
    ),
    pytest.param(
        add(
            proto="udp",
            host_addr="x",
            host_port="x",
            guest_addr="x",
            guest_port="x",
            splice=1,
        ),
        schema.BAD_HOST_ADDR,
        id="order-host-addr-second",
    ),
    pytest.param(
        add(proto="udp", host_port="x", guest_addr="x", guest_port="x", splice=1),
        schema.BAD_HOST_PORT,
        id="order-host-port-third",
    ),
    pytest.param(
        add(proto="udp", host_port=1, guest_addr="x", guest_port="x", splice=1),
        schema.BAD_GUEST_ADDR,
        id="order-guest-addr-fourth",
    ),
    pytest.param(
        add(proto="udp", host_port=1, guest_port="x", splice=1),
        schema.BAD_GUEST_PORT,
        id="order-guest-port-fifth",
    ),
    # remove_hostfwd
    pytest.param(
        b'{"execute":"remove_hostfwd"}', schema.BAD_ID, id="remove-no-arguments"
    ),
    *[
        pytest.param(remove(id=value), schema.BAD_ID, id=f"remove-id-{value!r}")
        for value in ["1", 0, 0.5, -1, True, None, [1]]
    ],
    pytest.param(remove(), schema.BAD_ID, id="remove-id-missing"),
]


@pytest.mark.parametrize(("request_bytes", "desc"), INVALID)
def test_parse_invalid(request_bytes: bytes, desc: str) -> None:
    assert parse_request(request_bytes) == BadRequest(desc)


def test_error_texts_are_the_catalogue() -> None:
    """The texts of the spec's §3.3, spelled out once more independently."""
    assert [
        schema.CANNOT_PARSE_JSON,
        schema.NOT_AN_OBJECT,
        schema.NO_EXECUTE,
        schema.UNKNOWN_EXECUTE,
        schema.TOO_LARGE,
        schema.BAD_PROTO,
        schema.BAD_HOST_ADDR,
        schema.BAD_HOST_PORT,
        schema.BAD_GUEST_ADDR,
        schema.BAD_GUEST_PORT,
        schema.ADD_FAILED,
        schema.BAD_ID,
        schema.REMOVE_FAILED,
    ] == [
        "bad request: cannot parse JSON",
        "bad request: json_object() failed",
        "bad request: no execute found",
        "bad request: unknown execute",
        "bad request: too large message",
        "bad request: add_hostfwd: bad arguments.proto",
        "bad request: add_hostfwd: bad arguments.host_addr",
        "bad request: add_hostfwd: bad arguments.host_port",
        "bad request: add_hostfwd: bad arguments.guest_addr",
        "bad request: add_hostfwd: bad arguments.guest_port",
        "bad request: add_hostfwd: slirp_add_hostfwd failed",
        "bad request: remove_hostfwd: bad arguments.id",
        "bad request: remove_hostfwd: slirp_remove_hostfwd failed",
    ]


@pytest.mark.parametrize(("request_bytes", "desc"), INVALID)
def test_answer_invalid(request_bytes: bytes, desc: str) -> None:
    service = FakeService()
    assert answer(request_bytes, service) == err(desc)
    assert "add" not in service.calls
    assert "remove" not in service.calls


# Whole conversations: (request, exact reply) in order, against one fresh service.
LIST_ONE = (
    b'{"return":{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0",'
    b'"host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]},'
    b'"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,'
    b'"guest_addr":"10.0.2.100","guest_port":80}]}'
)
CONVERSATIONS = [
    pytest.param([(PODMAN_ADD, b'{"return":{"id":1}}')], id="podman-add"),
    pytest.param(
        [
            (
                b'{"execute": "add_hostfwd", "arguments":{"proto": "tcp",'
                b'"host_port":8080,"guest_port":80}}\n',
                b'{"return":{"id":1}}',
            ),
            (b'{"execute": "list_hostfwd"}\n', LIST_ONE),
            (
                b'{"execute": "remove_hostfwd", "arguments":{"id": 1}}\n',
                b'{"return":{}}',
            ),
            (
                b'{"execute": "list_hostfwd"}\n',
                b'{"return":{"entries":[]},"entries":[]}',
            ),
        ],
        id="upstream-test-sequence",
    ),
    pytest.param(
        [(b'{"execute":"list_hostfwd"}', b'{"return":{"entries":[]},"entries":[]}')],
        id="list-empty",
    ),
    pytest.param(
        [
            (PODMAN_ADD, b'{"return":{"id":1}}'),
            (PODMAN_ADD, err(schema.ADD_FAILED)),
            (add(proto="udp", host_port=8080, guest_port=80), b'{"return":{"id":2}}'),
            (remove(id=1), b'{"return":{}}'),
            (remove(id=1), err(schema.BAD_ID)),
            (PODMAN_ADD, b'{"return":{"id":3}}'),
        ],
        id="ids-never-reused-and-port-in-use",
    ),
    pytest.param(
        [
            (
                add(proto="tcp", host_port=0, guest_port=80),
                b'{"return":{"id":1,"host_port":40001}}',
            ),
            (
                add(proto="udp", host_port=0.9, guest_port=53),
                b'{"return":{"id":2,"host_port":40002}}',
            ),
        ],
        id="host-port-0-reply-carries-port",
    ),
    pytest.param(
        [
            (remove(id=7), err(schema.BAD_ID)),
            (remove(id=1), err(schema.BAD_ID)),
        ],
        id="remove-unknown-id",
    ),
    pytest.param(
        [
            (
                add(
                    proto="udp",
                    host_addr="::1",
                    host_port=5353,
                    guest_addr="10.0.2.5",
                    guest_port=53,
                    splice=True,
                ),
                b'{"return":{"id":1}}',
            ),
            (add(proto="tcp", host_port=2222, guest_port=22), b'{"return":{"id":2}}'),
            (
                b'{"execute":"list_hostfwd"}',
                b'{"return":{"entries":[{"id":1,"proto":"udp","host_addr":"::1",'
                b'"host_port":5353,"guest_addr":"10.0.2.5","guest_port":53,'
                b'"splice":true},{"id":2,"proto":"tcp","host_addr":"0.0.0.0",'
                b'"host_port":2222,"guest_addr":"10.0.2.100","guest_port":22}]},'
                b'"entries":[{"id":1,"proto":"udp","host_addr":"::1",'
                b'"host_port":5353,"guest_addr":"10.0.2.5","guest_port":53,'
                b'"splice":true},{"id":2,"proto":"tcp","host_addr":"0.0.0.0",'
                b'"host_port":2222,"guest_addr":"10.0.2.100","guest_port":22}]}',
            ),
        ],
        id="list-insertion-order-v6-splice",
    ),
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_answer_conversation(conversation: list[tuple[bytes, bytes]]) -> None:
    service = FakeService()
    for request_bytes, reply in conversation:
        assert answer(request_bytes, service) == reply, request_bytes


def test_list_reply_satisfies_both_readings() -> None:
    """jq .return.entries (man page, upstream test) and .entries (real binary)."""
    service = FakeService()
    answer(PODMAN_ADD, service)
    reply = json.loads(answer(b'{"execute":"list_hostfwd"}', service))
    assert reply["return"]["entries"] == reply["entries"]
    assert reply["entries"][0]["guest_addr"] == str(DEFAULT_GUEST)
    assert "error" not in reply


@pytest.mark.parametrize(
    ("flag", "request_bytes", "desc"),
    [
        pytest.param("fail_add", PODMAN_ADD, schema.ADD_FAILED, id="add-fails"),
        pytest.param("raise_add", PODMAN_ADD, schema.ADD_FAILED, id="add-raises"),
        pytest.param(
            "fail_remove", remove(id=1), schema.REMOVE_FAILED, id="remove-fails"
        ),
        pytest.param(
            "raise_remove", remove(id=1), schema.REMOVE_FAILED, id="remove-raises"
        ),
    ],
)
def test_service_failures(flag: str, request_bytes: bytes, desc: str) -> None:
    service = FakeService()
    answer(PODMAN_ADD, service)
    if flag.startswith("raise_"):
        service.raise_on.add(flag.removeprefix("raise_"))
    else:
        setattr(service, flag, True)
    assert answer(request_bytes, service) == err(desc)


def test_add_passes_the_command_to_the_service() -> None:
    seen: list[AddHostFwd] = []

    class Recorder(FakeService):
        def add(self, cmd: AddHostFwd) -> tuple[int, int] | None:
            seen.append(cmd)
            return super().add(cmd)

    answer(PODMAN_ADD, Recorder())
    assert seen == [fwd()]
    assert seen[0].guest_addr is None


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        pytest.param(render_error("x"), b'{"error":{"desc":"x"}}', id="error"),
        pytest.param(
            render_error('quote " and \\'),
            b'{"error":{"desc":"quote \\" and \\\\"}}',
            id="error-escaped",
        ),
        pytest.param(render_added(1), b'{"return":{"id":1}}', id="added"),
        pytest.param(
            render_added(12, 43210),
            b'{"return":{"id":12,"host_port":43210}}',
            id="added-port",
        ),
        pytest.param(render_removed(), b'{"return":{}}', id="removed"),
        pytest.param(
            render_entries([]),
            b'{"return":{"entries":[]},"entries":[]}',
            id="entries-empty",
        ),
        pytest.param(
            render_entries(
                [
                    HostFwdEntry(
                        id=1,
                        proto="tcp",
                        host_addr=ANY,
                        host_port=8080,
                        guest_addr=V4("10.0.2.100"),
                        guest_port=80,
                    )
                ]
            ),
            LIST_ONE,
            id="entries-one",
        ),
    ],
)
def test_render(rendered: bytes, expected: bytes) -> None:
    assert rendered == expected
    assert not rendered.endswith(b"\n")


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        pytest.param(b"", False, id="empty"),
        pytest.param(b"  \n", False, id="whitespace"),
        pytest.param(b"{", False, id="open-brace"),
        pytest.param(b'{"execute":"add_', False, id="mid-string"),
        pytest.param(b'{"execute":"list_hostfwd"', False, id="no-close"),
        pytest.param(b'{"execute":"list_hostfwd"}', True, id="object"),
        pytest.param(b'{"execute":"list_hostfwd"}\n', True, id="object-newline"),
        pytest.param(b'{"execute":"list_hostfwd"} {"exe', True, id="object-then-more"),
        pytest.param(PODMAN_ADD[:-2], False, id="podman-minus-brace"),
        pytest.param(PODMAN_ADD[:-1], True, id="podman-no-newline"),
        pytest.param(b"[" * 5000, True, id="too-deep-is-decided"),
        pytest.param(b"tru", False, id="partial-literal"),
        pytest.param(b"12", True, id="number"),
        pytest.param(b"badjson", False, id="garbage-waits-for-eof"),
    ],
)
def test_is_complete(data: bytes, complete: bool) -> None:
    assert is_complete(data) is complete


@given(st.binary(max_size=5000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse_request(data)
    assert isinstance(result, AddHostFwd | RemoveHostFwd | ListHostFwd | BadRequest)
    assert isinstance(is_complete(data), bool)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["tcp", "udp", "", "0.0.0.0", "::1", "10.0.2.100"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_ARGUMENT_NAMES = st.sampled_from(
    ["proto", "host_addr", "host_port", "guest_addr", "guest_port", "splice", "id"]
)


@given(
    st.sampled_from(["add_hostfwd", "remove_hostfwd", "list_hostfwd", "other"]),
    st.dictionaries(_ARGUMENT_NAMES, _JSON, max_size=7),
)
def test_arbitrary_arguments_parse_or_refuse(
    execute: str, arguments: dict[str, object]
) -> None:
    data = json.dumps({"execute": execute, "arguments": arguments}).encode()
    result = parse_request(data)
    if isinstance(result, AddHostFwd):
        assert 0 <= result.host_port <= 65535
        assert 1 <= result.guest_port <= 65535
        assert result.proto in ("tcp", "udp")
    elif isinstance(result, RemoveHostFwd):
        assert result.id >= 1
    reply = json.loads(answer(data, FakeService()))
    assert set(reply) in ({"return"}, {"error"}, {"return", "entries"})

"""Hostile SSH messages after key exchange, sent with paramiko's raw message interface.

Usage: hostile_ssh.py HOST PORT USER KEY CERT

For each case, a fresh connection: log in (unless the case is about authentication),
open a session channel the honest way, then send the hostile messages. Prints one JSON
line per case: {"case": NAME, "outcome": "closed" | "alive" | "error: ..."}, where
"alive" means the gateway still answered a global request after the hostile messages
(it ignored or refused them) and "closed" means it dropped the connection. Either is
acceptable; what the caller checks is that the gateway process survives, stays small,
and serves a real user afterwards.
"""

import json
import sys
import time

import paramiko
from paramiko.common import (
    MSG_CHANNEL_CLOSE,
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EOF,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_CHANNEL_OPEN,
    MSG_CHANNEL_REQUEST,
    MSG_CHANNEL_WINDOW_ADJUST,
    MSG_GLOBAL_REQUEST,
    MSG_SERVICE_REQUEST,
    MSG_USERAUTH_INFO_RESPONSE,
    MSG_USERAUTH_REQUEST,
)
from paramiko.message import Message

HOST, PORT, USER, KEY, CERT = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
DEADLINE = 10.0


def msg(kind, *fields):
    m = Message()
    m.add_byte(bytes([kind]))
    for f in fields:
        if isinstance(f, bool):
            m.add_boolean(f)
        elif isinstance(f, int):
            m.add_int(f)
        elif isinstance(f, bytes):
            m.add_string(f)
        else:
            m.add_string(f.encode())
    return m


def connect(login=True):
    t = paramiko.Transport((HOST, PORT))
    t.banner_timeout = DEADLINE
    t.auth_timeout = DEADLINE
    t.start_client(timeout=DEADLINE)
    if login:
        key = paramiko.Ed25519Key.from_private_key_file(KEY)
        key.load_certificate(CERT)
        t.auth_publickey(USER, key)
    return t


def alive(t):
    """Whether the connection still answers: a global request that wants a reply."""
    if not t.is_active():
        return False
    try:
        t.global_request("keepalive@openssh.com", wait=True)
    except Exception:
        return False
    # A gateway that answers and then closes is "closed".
    time.sleep(0.05)
    return t.is_active()


def honest_channel(t):
    ch = t.open_session(timeout=DEADLINE)
    return ch


def case_data_on_unknown_channel(t):
    t._send_user_message(msg(MSG_CHANNEL_DATA, 4242, b"who is this for?"))
    t._send_user_message(msg(MSG_CHANNEL_EXTENDED_DATA, 4243, 1, b"and this?"))


def case_eof_and_close_on_unknown_channels(t):
    for n in (7777, 0xFFFFFFFF):
        t._send_user_message(msg(MSG_CHANNEL_EOF, n))
        t._send_user_message(msg(MSG_CHANNEL_CLOSE, n))


def case_window_adjust_overflow(t):
    ch = honest_channel(t)
    for _ in range(3):
        t._send_user_message(msg(MSG_CHANNEL_WINDOW_ADJUST, ch.remote_chanid, 0xFFFFFFFF))
    ch.exec_command("exec payments/payments-api-0 -- echo overflow")
    ch.recv(1024)


def case_request_on_unconfirmed_channel(t):
    # Open a channel and, before any confirmation can arrive, send requests on ids the
    # server has not assigned.
    t._send_user_message(msg(MSG_CHANNEL_OPEN, "session", 900, 2 * 1024 * 1024, 32768))
    for n in (0, 1, 2, 3, 900, 0xFFFFFFFE):
        t._send_user_message(msg(MSG_CHANNEL_REQUEST, n, "exec", True, "exec payments/payments-api-0 -- echo hi"))


def case_absurd_channel_open(t):
    t._send_user_message(msg(MSG_CHANNEL_OPEN, "session", 1, 0, 0))
    t._send_user_message(msg(MSG_CHANNEL_OPEN, "session", 2, 0xFFFFFFFF, 0xFFFFFFFF))
    t._send_user_message(msg(MSG_CHANNEL_OPEN, "x" * 60000, 3, 1024, 1024))
    t._send_user_message(msg(MSG_CHANNEL_OPEN, "direct-tcpip", 4, 1024, 1024, "a" * 60000, 0xFFFFFFFF, "b", 0))


def case_huge_requests(t):
    ch = honest_channel(t)
    t._send_user_message(msg(MSG_CHANNEL_REQUEST, ch.remote_chanid, "exec", True, "x" * 200000))
    t._send_user_message(msg(MSG_CHANNEL_REQUEST, ch.remote_chanid, "pty-req", True, "xterm", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, b"\xff" * 1000))
    t._send_user_message(msg(MSG_CHANNEL_REQUEST, ch.remote_chanid, "window-change", False, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0))
    t._send_user_message(msg(MSG_CHANNEL_REQUEST, ch.remote_chanid, "y" * 50000, True))
    t._send_user_message(msg(MSG_GLOBAL_REQUEST, "z" * 50000, True))


def case_data_past_the_window(t):
    ch = honest_channel(t)
    ch.exec_command("exec payments/payments-api-0 -- cat")
    # Ignore the window the gateway granted: 8 MiB in one go.
    for _ in range(256):
        t._send_user_message(msg(MSG_CHANNEL_DATA, ch.remote_chanid, b"\0" * 32768))


def case_keyboard_interactive_absurd_counts():
    t = connect(login=False)
    t._send_message(msg(MSG_SERVICE_REQUEST, "ssh-userauth"))
    time.sleep(0.1)
    t._send_message(msg(MSG_USERAUTH_REQUEST, USER, "ssh-connection", "keyboard-interactive", "", ""))
    # An answer to a question never asked, claiming four billion responses.
    m = msg(MSG_USERAUTH_INFO_RESPONSE, 0xFFFFFFFF)
    m.add_string(b"a" * 1000)
    t._send_message(m)
    return t


CASES = [
    ("data on unknown channels", case_data_on_unknown_channel),
    ("eof and close on unknown channels", case_eof_and_close_on_unknown_channels),
    ("window adjust overflow", case_window_adjust_overflow),
    ("requests on unconfirmed channels", case_request_on_unconfirmed_channel),
    ("absurd channel opens", case_absurd_channel_open),
    ("huge requests", case_huge_requests),
    ("data past the window", case_data_past_the_window),
]


def run(name, fn):
    try:
        if fn is None:
            t = case_keyboard_interactive_absurd_counts()
        else:
            t = connect()
            fn(t)
        outcome = "alive" if alive(t) else "closed"
        t.close()
    except (EOFError, paramiko.SSHException, OSError) as e:
        outcome = "closed"
    except Exception as e:  # a bug in this script, not in the gateway
        outcome = "error: %r" % (e,)
    print(json.dumps({"case": name, "outcome": outcome}), flush=True)


for name, fn in CASES:
    run(name, fn)
run("keyboard-interactive with absurd counts", None)

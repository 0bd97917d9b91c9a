#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# liboutpost through its typelib (Outpost-1.0), as a Python program uses it.
# Run by tests/liboutpost/test-gi.c with OUTPOST_ADDRESS set to a bus with
# outpostd on it.
import os

import gi
gi.require_version('Outpost', '1.0')
from gi.repository import GLib, Outpost  # noqa: E402

loop = GLib.MainLoop()
result = {}


def on_client(source, res, data):
    result['client'] = Outpost.Client.new_finish(res)
    loop.quit()


Outpost.Client.new_for_address(os.environ['OUTPOST_ADDRESS'], None, on_client, None)
loop.run()
client = result['client']
assert client.get_state() == Outpost.ClientState.CONNECTED, client.get_state()
assert len(client.props.server_id) == 36

users = client.get_users()
user_id, tag = users.call_create_user_sync(GLib.Variant('a{sv}', {'name': GLib.Variant('s', 'py')}), None)
try:
    users.call_get_user_sync('00000000-0000-4000-8000-000000000000', None)
    raise AssertionError('GetUser of an unknown id succeeded')
except GLib.Error as e:
    assert e.matches(Outpost.error_quark(), Outpost.Error.NOT_FOUND), e

events = []
client.subscribe('app/', lambda client, seq, topic, time, data: events.append((seq, topic, data['k'])))
client.get_events().call_publish_sync('app/py', GLib.Variant('a{sv}', {'k': GLib.Variant('s', 'v')}), None)
context = GLib.MainContext.default()
while not events:
    context.iteration(True)
assert events[0][1:] == ('app/py', 'v'), events
print('ok')

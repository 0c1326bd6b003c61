# SPDX-License-Identifier: MIT
"""Helpers every test suite shares (integration, e2e and kubia-sim, image, bench).

ports     free ports on loopback, outside the ephemeral range, one per run
waits     wait_until: a bounded wait for a condition
http      one HTTP request and its answer
dnswire   DNS messages: names, questions, a query over UDP
servers   loopback servers that misbehave on purpose (hung, trickling, fixed DNS answers)

Each suite puts test/lib on its path the same way: test/pytest.ini's pythonpath for
pytest, one sys.path line in a script that runs on its own.
"""

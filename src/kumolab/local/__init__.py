"""The local target: what stands in for AWS on this machine.

Layers, each importing only the ones above it in this list:

- :mod:`kumolab.paths` and :mod:`.settings`: the state directory, the default ports, the emulator's
  endpoint and the AWS shared-config profile that names it;
- :mod:`.guard`: the checks every loopback server applies first (Host, Content-Length, threads, header
  CR/LF) and the emulator's access-key check (docs/security.md);
- :mod:`.process`: background services with a pid file, a log and a health check;
- :mod:`.emulator`: ``kumolab-emulator``, which runs moto behind :mod:`.front_door` (a separate process:
  the emulator module never imports it); :mod:`.moto_atomic` holds fixes to moto's backends;
- :mod:`.sshhost` (``kumolab-sshhost``) and :mod:`.runtime` (``kumolab-runtime``), which reach the
  emulator through the profile like any other AWS client (:mod:`kumolab.aws`).
- :mod:`.front_door` and :mod:`.ecs_tasks`: the emulator process itself, moto behind ordered request
  rules and backend hooks, hosting the runtime so that the emulator endpoint executes what it stores.
"""

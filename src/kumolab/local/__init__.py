"""The local target: what stands in for AWS on this machine.

Layers, each importing only the ones above it in this list:

- :mod:`kumolab.paths` and :mod:`.settings`: the state directory, the default ports, the emulator's
  endpoint and the AWS shared-config profile that names it;
- :mod:`.process`: background services with a pid file, a log and a health check;
- :mod:`.emulator` (with :mod:`.moto_atomic`, the moto server it runs): ``kumolab-emulator``;
- :mod:`.sshhost` (``kumolab-sshhost``) and :mod:`.runtime` (``kumolab-runtime``), which reach the
  emulator through the profile like any other AWS client (:mod:`kumolab.aws`).
"""

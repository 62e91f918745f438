"""Class mode (issue 17): a roster becomes one isolated lab environment per student.

- :mod:`.roster` reads and checks the roster CSV;
- :mod:`.preflight` checks the whole class against quotas, offerings, cost and permissions before anything exists;
- :mod:`.budget` estimates each student's spend and decides warnings, stops and expiries (a clock tests can set);
- :mod:`.receipts` counts a student's resources independently and writes their teardown receipt;
- :mod:`.page` writes the instructor page (``results/<owner>/class/index.html``) and its spend chart.

``python -m kumolab.class_mode <command>`` is what ``playbooks/class*.yml`` run; see ``docs/class_mode.md``.
"""

"""The device side where there is no systemd: candidates and the main instance as processes.

* ``runner``: :class:`~harmony_fleet.adapters.process.runner.ProcessRunner`, the
  ``CandidateRunner`` with detached processes;
* ``supervisor``: the process-mode **launcher** (``Restart=always`` in Python) that keeps the
  main instance running and, through ``adapters.device.watcher``, judges a freshly committed
  version (the systemd twin is the unit with its hooks, ``adapters.systemd``);
* ``pidfile`` (one pid-file format for both), ``bounded`` (a bounded child: the self-test on
  every platform) and ``_proc`` (pidfd, ``/proc``, process groups).

The files of an upgrade are not here: they are the same on every platform (``adapters.device``).
"""

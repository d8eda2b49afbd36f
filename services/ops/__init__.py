"""Process plumbing: service threads, the timer thread, sd_notify, start-up checks, housekeeping,
the side loops' wiring and graceful shutdown.

May import every room below the daemon; nothing imports it but the daemon and the rooms that
need its timer or threads.
"""

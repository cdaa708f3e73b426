"""Peer codes run on ptybench's data: pty-chi (DM, LSQML) and PtyLab (ePIE), each in its own venv.

``compare`` exports a dataset, runs ``run_ptychi`` / ``run_ptylab`` with the peers' own Pythons and
tabulates seconds per iteration and object error beside ptybench's engines (``make peers``).
"""

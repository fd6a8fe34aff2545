"""The systemd unit and drop-in shipped with appban (installed by `appban service install`)."""

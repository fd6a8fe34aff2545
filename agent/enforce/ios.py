"""What blocking means for an iPhone or iPad found through the gateway.

Over USB, libimobiledevice could only uninstall an app from a *supervised* device with the
owner's trust; government iPhones are managed by an MDM, which is where removal (or a
blocked-app restriction) belongs. So the finding carries an instruction for a person instead.
"""

from __future__ import annotations

from agent.model import App, Device


def manual_instruction(app: App, device: Device) -> str:
    """Given a banned iOS app and its device, return what must be done by hand or in the MDM."""
    who = device.hostname or device.id
    return (
        f"remove {app.name or app.id} ({app.id}) from {who} (UDID {device.id}) by hand "
        f"(touch and hold the icon, Remove App), or push a removal or blocked-app restriction "
        f"for bundle id {app.id} from the MDM; appban does not uninstall iOS apps over USB"
    )

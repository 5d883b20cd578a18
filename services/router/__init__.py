"""The routing service: WineMeUp's public REST API."""

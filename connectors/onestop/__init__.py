"""Provincial one-stop systems (Hệ thống một cửa điện tử): a connector and a simulator."""

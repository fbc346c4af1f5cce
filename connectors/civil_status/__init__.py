"""The civil-status registry (hộ tịch, Ministry of Justice): a simulator of its birth and death
registration services for the joint procedures, and the parts every agency simulator shares
(``agency``)."""

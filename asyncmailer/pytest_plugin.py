"""pytest plugin for asyncmailer users (fixtures arrive with MemoryTransport)."""

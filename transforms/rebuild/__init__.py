"""Rebuilds (--previous, --update): the manifest a build leaves for the next one, placing tiles in stable slots, and
replacing a build in place without a reader ever seeing a gap."""

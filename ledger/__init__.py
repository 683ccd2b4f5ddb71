"""The shared points ledger of the Green Points alliance.

It knows members, merchants, points, vouchers and redemption codes; it never knows about chat.
"""

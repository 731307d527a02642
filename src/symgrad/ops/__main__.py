from symgrad.ops import table

print(table())

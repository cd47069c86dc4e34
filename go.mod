module github.com/ebrainpool/ebrainpool

go 1.26.8

require (
	github.com/godbus/dbus/v5 v5.2.4 // indirect
	github.com/holoplot/go-avahi v1.0.1 // indirect
	github.com/lxc/go-lxc v0.0.0-20240606200241-27b3d116511f // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

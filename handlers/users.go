package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerUsers(r gin.IRouter) {
	r.GET("/users", s.need(adminOnly), s.listUsers)
	r.POST("/users", s.need(adminOnly), s.createUser)
	r.PATCH("/users/:user", s.need(adminOnly), s.updateUser)
	r.DELETE("/users/:user", s.need(adminOnly), s.deleteUser)
	r.GET("/user", s.need(loggedIn), s.me)
}

// userInput is the body of a user create or update; absent fields are nil. Name is taken
// on create only.
type userInput struct {
	Name     *string `json:"name"`
	Email    *string `json:"email"`
	Admin    *bool   `json:"admin"`
	Password *string `json:"password"`
}

func (s *Server) listUsers(c *gin.Context) {
	users, err := s.db.ListUsers(c.Request.Context())
	if err != nil {
		s.fail(c, fmt.Errorf("list users: %w", err))
		return
	}
	c.JSON(http.StatusOK, users)
}

func (s *Server) createUser(c *gin.Context) {
	var in userInput
	if !s.bindJSON(c, &in) {
		return
	}
	u := &store.User{}
	set(&u.Name, in.Name)
	set(&u.Email, in.Email)
	set(&u.Admin, in.Admin)
	password := ""
	set(&password, in.Password)
	if err := s.db.CreateUser(c.Request.Context(), u, password); err != nil {
		s.fail(c, fmt.Errorf("create user %q: %w", u.Name, err))
		return
	}
	c.JSON(http.StatusCreated, u)
}

func (s *Server) updateUser(c *gin.Context) {
	var in userInput
	if !s.bindJSON(c, &in) {
		return
	}
	name := c.Param("user")
	if in.Name != nil && *in.Name != name {
		s.fail(c, store.Errorf(store.EINVALID, "name: a user cannot be renamed; create a new user instead"))
		return
	}
	if in.Password != nil && name == currentUser(c).Name {
		s.fail(c, store.Errorf(store.EINVALID, "password: change your own password with PUT /api/v1/user/password (the account page), which asks for the current one"))
		return
	}
	if in.Admin != nil && !*in.Admin && name == currentUser(c).Name {
		s.fail(c, store.Errorf(store.ECONFLICT, "admin: you cannot take away your own administrator right; ask another administrator"))
		return
	}
	u, err := s.db.UpdateUser(c.Request.Context(), name, store.UserUpdate{Email: in.Email, Admin: in.Admin, Password: in.Password})
	if err != nil {
		s.fail(c, fmt.Errorf("update user %q: %w", name, err))
		return
	}
	c.JSON(http.StatusOK, u)
}

func (s *Server) deleteUser(c *gin.Context) {
	name := c.Param("user")
	if name == currentUser(c).Name {
		s.fail(c, store.Errorf(store.ECONFLICT, "you cannot delete your own user; ask another administrator"))
		return
	}
	if err := s.db.DeleteUser(c.Request.Context(), name); err != nil {
		s.fail(c, fmt.Errorf("delete user %q: %w", name, err))
		return
	}
	c.Status(http.StatusNoContent)
}

// me returns the user making the request.
func (s *Server) me(c *gin.Context) {
	c.JSON(http.StatusOK, currentUser(c))
}
